"""The Ray a run talks to: a private single-node Ray of this machine (start, token auth, stop), or a cluster
at an address (reachable? joined with the environment's auth settings).

The private Ray is ``ray start --head --block`` in a session of its own, bound to 127.0.0.1, no dashboard, its
own temp dir (owner-only, removed when it stops, or by the next run when its driver was killed), token
authentication with a fresh per-run token; it is stopped by PID. A cluster's auth settings
come from the environment (``RAY_AUTH_MODE``, ``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH``, as on its nodes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sepbench.errors import UserError
from sepbench.executors.processes import die_with_parent, stop_process_tree
from sepbench.executors.ray_tempdir import make_temp_dir, remove_stale_temp_dirs

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 120.0  # seconds for the private Ray to come up
_AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


class PrivateRay:
    """A single-node Ray on this machine for one run: 127.0.0.1 only, no dashboard, own temp dir, own token."""

    def __init__(self) -> None:
        remove_stale_temp_dirs()
        self.temp_dir = make_temp_dir()
        self.port = _free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        env = {k: v for k, v in os.environ.items() if k not in (*_AUTH_VARS, "RAY_ADDRESS")}
        # on Linux Ray rewrites 127.0.0.1 to the machine's outward IP (and then listens on every interface);
        # this keeps the node on loopback, as Ray does on macOS and Windows
        env.update(self.auth, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0")
        self.log = Path(self.temp_dir) / "ray-start.log"
        command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                   f"--node-ip-address={LOOPBACK}", f"--port={self.port}", "--include-dashboard=false",
                   f"--temp-dir={self.temp_dir}", "--object-store-memory=268435456", "--disable-usage-stats"]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.temp_dir, start_new_session=True,
                                         preexec_fn=die_with_parent if sys.platform == "linux" else None)

    def wait_started(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "Ray runtime started" in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
        why = lines[-1].strip() if lines else f"no output in {timeout:g} s"
        raise UserError(f"could not start a private Ray on this machine: {why} (or run with --executor local)")

    def stop(self) -> None:
        stop_process_tree(self.proc)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    return host in ("127.0.0.1", "localhost", "::1")


@contextlib.contextmanager
def driver_settings(env: dict[str, str], loopback: bool) -> Iterator[None]:
    """Auth, address and log settings of this driver process for one run, restored afterwards.

    Ray reads ``RAY_AUTH_*`` into cached config: after changing them the cache is refreshed, as ray.init does.
    """
    import ray._private.ray_constants as ray_constants

    saved = {key: os.environ.get(key) for key in env}
    saved_cluster = ray_constants.ENABLE_RAY_CLUSTER
    os.environ.update(env)
    if loopback:  # keep 127.0.0.1 as 127.0.0.1 (see PrivateRay)
        ray_constants.ENABLE_RAY_CLUSTER = False
    _refresh_auth_config()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        ray_constants.ENABLE_RAY_CLUSTER = saved_cluster
        _refresh_auth_config()


def _refresh_auth_config() -> None:
    with contextlib.suppress(Exception):  # private API of ray 2.5x; without it only the env var counts
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast when nothing listens at ``address`` (ray.init would retry for many minutes)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except ValueError:
        raise UserError(f"--address {address!r}: expected HOST:PORT") from None
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc} (is its head "
                        f"node running? see the README, 'Running on a Ray cluster')") from None


def connect(ray: Any, address: str) -> None:
    """Join the Ray at ``address``; a refusal (often: auth) is one line saying what to set."""
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    except Exception as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        message = lines[0] if lines else type(exc).__name__
        if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
            hint = "if the cluster uses token authentication (Ray's default), set RAY_AUTH_MODE=token and its token"
        else:
            hint = "check that the token is the cluster's"
        raise UserError(f"cannot join the Ray cluster at {address}: {message} ({hint}: RAY_AUTH_TOKEN or "
                        f"RAY_AUTH_TOKEN_PATH, as on its nodes; see the README, 'Running on a Ray cluster')") from None
