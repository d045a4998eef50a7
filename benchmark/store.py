"""The run directory: resolved grid, manifest, one atomic file set per finished cell, a lock, resume.

    <run>/grid.yaml  manifest.json  run.log  cells/<id>.parquet  cells/<id>.json  examples/<id>.npz
    <run>/models/<id>.safetensors  models/<id>.json   (kept models, when asked for: sepbench.models)
    <run>/checkpoints/<id>.pt   (a training cell's checkpoint while it runs: deleted once its result is written)
    <run>/checkpoints/<id>.machines.json   (which machine trained after which epoch: sepbench.training_machines)

A run writes only into a new or empty directory or an earlier run's (:func:`foreign_dir_problem`): ``--out .``
beside a user's own grid.yaml must not rewrite it.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sepbench.errors import RunLocked, UserError, short
from sepbench.files import atomic_write, is_disk_full
from sepbench.integrity import CellFiles, damage, is_cell_id, move_aside, read_record, sha256_bytes
from sepbench.manifest import read_manifest
from sepbench.models.files import write_model
from sepbench.signals import signals_deferred as interrupts_deferred
from sepbench.training_machines import SUFFIX as MACHINES_SUFFIX

ROW_COLUMNS = ["run", "cell", "method", "label", "scenario", "sigma", "seed", "mixture", "source",
               "mse", "psnr", "ssim", "perm"]
# written when the cell computes them: sepbench.recognise; SSIM with the Gaussian window; the fixed-order score
# (sepbench.metrics.FIXED_COLUMNS)
OPTIONAL_COLUMNS = ["recognised", "ssim_gauss", "mse_fixed", "psnr_fixed", "ssim_fixed"]
CHECKPOINTS_DIR = "checkpoints"  # training checkpoints of the cells that run (sepbench.methods.training)
LOCK_NAME = ".lock"  # the first thing a run creates in its directory
BEFORE_MANIFEST = ("grid.yaml", "run.log", "cells", "examples", "models", "checkpoints", ".*.part",
                   ".*.tmp")  # a run killed early
MAX_MANIFEST_BYTES = 256 * 2**20


def _holds_run_manifest(path: Path) -> bool:
    """Whether ``path`` is a run's manifest: a JSON object with a list of cells."""
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            return False
        manifest = json.loads(path.read_bytes())
    except (OSError, ValueError):  # absent, a folder, unreadable, not JSON, not UTF-8
        return False
    return isinstance(manifest, dict) and isinstance(manifest.get("cells"), list)


def foreign_dir_problem(root: Path) -> str | None:
    """Why a run must not write into ``root``, or None: it is absent, empty, or a run directory — one with a
    run's manifest, or with a run's lock and either a (damaged) manifest or only what a run writes before it."""
    if not root.exists():
        return None
    if not root.is_dir():
        return f"{root}: not a directory"
    try:
        names = sorted(entry.name for entry in os.scandir(root))
    except OSError as exc:
        return f"{root}: cannot read: {exc.strerror}"
    if not names or _holds_run_manifest(root / "manifest.json"):
        return None
    if LOCK_NAME in names:
        rest = [n for n in names if n != LOCK_NAME]
        if any(n == "manifest.json" or n.startswith("manifest.json.damaged-") for n in rest):
            return None  # a run's directory whose manifest is damaged: the run sets it aside
        if all(any(fnmatch.fnmatchcase(n, p) for p in BEFORE_MANIFEST) for n in rest):
            return None
    shown = ", ".join(short(n, 40) for n in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (f"{root}: not empty and not a run directory (holds {shown}): a run writes only into a new or "
            "empty directory or an earlier run's; choose another --out")


class RunStore:
    """Reads and writes one run directory. Only the driver process writes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.cells = self.root / "cells"
        self.examples = self.root / "examples"
        self.checkpoints = self.root / CHECKPOINTS_DIR

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run directory for this process; another run gets a clear error, not a corrupt dir. A
        directory that is neither new, empty nor a run's is refused before anything is written to it."""
        problem = foreign_dir_problem(self.root)
        if problem:
            raise UserError(problem)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = open(self.root / ".lock", "a+")
        except OSError as exc:  # a file in the way, no permission, a read-only file system: bad --out
            if is_disk_full(exc):
                raise
            why = exc.strerror or type(exc).__name__
            raise UserError(f"{self.root}: cannot write a run directory here ({why}: {exc.filename})") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            message = f"{self.root} is locked by a running run (pid {holder}); wait for it or use --out"
            raise RunLocked(message) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def checkpoint_folder(self) -> Path | None:
        """The folder (absolute) where this run's training cells keep their checkpoints, made if need be; None
        where it cannot be made (something in its way, no permission): the cells then train without them."""
        folder = self.checkpoints.absolute()
        try:
            folder.mkdir(exist_ok=True)
        except OSError:
            return None
        return folder if folder.is_dir() and not folder.is_symlink() else None

    def remove_checkpoint(self, cell_id: str) -> None:
        """Delete a cell's training checkpoint (its result is written: it is not needed again); never fails."""
        if is_cell_id(cell_id):
            for name in (f"{cell_id}.pt", f"{cell_id}{MACHINES_SUFFIX}"):  # the checkpoint, the machines it saw
                with contextlib.suppress(OSError):
                    (self.checkpoints / name).unlink(missing_ok=True)

    def prune_checkpoints(self, keep: set[str]) -> int:
        """Delete the checkpoints of cells not in ``keep`` (finished, or no longer in the grid), and the folder if it
        is then empty; files not named by a cell id are left alone. Returns how many were deleted."""
        folder = self.checkpoints
        if not folder.is_dir() or folder.is_symlink():
            return 0
        count = 0
        with contextlib.suppress(OSError):
            for path in folder.glob("*.pt"):
                if is_cell_id(path.stem) and path.stem not in keep and (path.is_file() or path.is_symlink()):
                    path.unlink(missing_ok=True)
                    count += 1
            for path in folder.glob(f"*{MACHINES_SUFFIX}"):  # the machines of a checkpoint go with it
                cell_id = path.name.removesuffix(MACHINES_SUFFIX)
                if is_cell_id(cell_id) and cell_id not in keep and (path.is_file() or path.is_symlink()):
                    path.unlink(missing_ok=True)
            if not any(folder.iterdir()):
                folder.rmdir()
        return count

    def write_grid(self, resolved: dict[str, Any]) -> None:
        atomic_write(self.root / "grid.yaml", yaml.safe_dump(resolved, sort_keys=False).encode())

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write(self.root / "manifest.json", json.dumps(manifest, indent=2, default=str).encode())

    def read_manifest(self) -> dict[str, Any]:
        """The manifest as a JSON object (its keys unchecked: see :mod:`sepbench.manifest`); a UserError if there
        is none, ManifestDamaged (a ValueError) if it cannot be read as one."""
        manifest = read_manifest(self.root / "manifest.json")
        if manifest is None:
            raise UserError(f"{self.root}: not a run directory (no manifest.json)")
        return manifest

    def cell_status(self, cell_id: str) -> str | None:
        """'done' (record and files intact), 'failed', 'damaged' (see :mod:`sepbench.integrity`), or None if absent."""
        files = CellFiles.of(self.root, cell_id)
        if not files.meta.exists() and not files.meta.is_symlink():
            return None
        if damage(files) is not None:
            return "damaged"
        try:
            return read_record(files.meta)["status"]
        except ValueError:  # changed since it was checked
            return "damaged"

    def read_record(self, cell_id: str) -> dict[str, Any]:
        """The JSON record of a cell whose status is 'done' or 'failed'."""
        return read_record(self.cells / f"{cell_id}.json")

    def recorded_ids(self) -> list[str]:
        """Ids of every cell with a record in this run directory (any grid version); other names are ignored
        (see :meth:`foreign_records`)."""
        return sorted(p.stem for p in self.cells.glob("*.json") if is_cell_id(p.stem))

    def foreign_records(self) -> list[str]:
        """Names of ``cells/*.json`` files that are not named by a cell id: never read, never used as a cell."""
        return sorted(p.name for p in self.cells.glob("*.json") if not is_cell_id(p.stem))

    def set_aside_damaged(self) -> list[tuple[str, str]]:
        """Move every damaged cell into cells/damaged/; returns (cell id, why) for each."""
        found = []
        for cell_id in self.recorded_ids():
            reason = damage(CellFiles.of(self.root, cell_id))
            if reason is not None:
                move_aside(self.root, cell_id)
                found.append((cell_id, reason))
        return found

    def write_result(self, result: Any, run_name: str) -> None:
        """Rows first, then examples (and a kept model), then the metadata that marks the cell finished; Ctrl-C and
        SIGTERM wait for all of them."""
        with interrupts_deferred():
            self._write_result(result, run_name)

    def _write_result(self, result: Any, run_name: str) -> None:
        sums: dict[str, str] = {}
        if result.rows is not None:
            rows = result.rows.copy()
            rows.insert(0, "run", run_name)
            buffer = io.BytesIO()
            rows[ROW_COLUMNS + [c for c in OPTIONAL_COLUMNS if c in rows]].to_parquet(buffer, index=False)
            atomic_write(self.cells / f"{result.cell_id}.parquet", buffer.getvalue())
            sums["rows"] = sha256_bytes(buffer.getvalue())
        if result.examples:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **result.examples)
            atomic_write(self.examples / f"{result.cell_id}.npz", buffer.getvalue())
            sums["examples"] = sha256_bytes(buffer.getvalue())
        sums.update(write_model(self.root, result.cell_id, getattr(result, "model", None)))
        meta = {**result.meta, "files": sums}  # checksums: a damaged file is detected, not trusted
        atomic_write(self.cells / f"{result.cell_id}.json", json.dumps(meta, indent=2, default=str).encode())

