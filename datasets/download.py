"""Verified downloads for the built-in datasets: stream to a temp file, check the published checksums, rename.

A file is fetched from each mirror in turn into a temp file beside its destination
(:func:`sepbench.files.atomic_output`); its SHA-256 (and MD5, where the authors publish one) is checked before the
rename, so nothing is ever parsed unverified and a failed, refused or interrupted transfer leaves nothing behind.
A transfer that ends short of its ``Content-Length`` (or of the published size) is an interrupted one, said in one
line. ``$BENCH_<SET>_URL`` (space- or comma-separated base addresses) replaces a dataset's mirror list.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from sepbench.datasets.base import ChecksumError
from sepbench.files import atomic_output

CHUNK = 1 << 16


@dataclass(frozen=True)
class PublishedFile:
    """A data file as its authors publish it: its name and checksums (and size, where known)."""

    name: str
    sha256: str
    md5: str | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        if len(self.sha256) != 64 or (self.md5 is not None and len(self.md5) != 32):
            raise ValueError(f"{self.name}: a SHA-256 (64 hex digits) is needed, and an MD5 has 32")


class DownloadError(OSError):
    """No mirror delivered a file (unreachable, refused, interrupted); the message is one line."""


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def digests(path: Path) -> tuple[str, str]:
    """The SHA-256 and MD5 of a file, read once in chunks."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def mismatch(spec: PublishedFile, sha256: str, md5: str, size: int | None = None) -> str | None:
    """Why content with these digests is not ``spec`` (None when it is)."""
    if spec.size is not None and size is not None and size != spec.size:
        return f"{size} bytes, expected {spec.size}"
    if sha256 != spec.sha256.lower():
        return f"SHA-256 {sha256[:16]}…, expected {spec.sha256.lower()[:16]}…"
    if spec.md5 is not None and md5 != spec.md5.lower():
        return f"MD5 {md5}, expected {spec.md5.lower()} (its SHA-256 matches: the recorded checksums disagree)"
    return None


def verify(path: Path, spec: PublishedFile) -> None:
    """Raise :class:`ChecksumError` unless the file at ``path`` is ``spec``, byte for byte."""
    why = mismatch(spec, *digests(path), size=path.stat().st_size)
    if why is not None:
        raise ChecksumError(f"{path}: not the published {spec.name} ({why}): replace it, or remove it to fetch "
                            "it again")


def mirror_list(env_var: str, defaults: Iterable[str], base_url: str | None = None) -> list[str]:
    """The base addresses to try, in order: ``base_url``, else ``$env_var`` (space/comma separated), else the
    defaults."""
    if base_url:
        return [base_url]
    return os.environ.get(env_var, "").replace(",", " ").split() or list(defaults)


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value is not None and value.strip().isdigit() else None


def _fetch_one(url: str, spec: PublishedFile, dest: Path, timeout: float, announce: Callable[[], None]) -> None:
    """One GET of ``url`` into ``dest``, verified; raises DownloadError or ChecksumError, leaving nothing."""
    request = urllib.request.Request(url, headers={"User-Agent": "sepbench"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        total = _content_length(response)
        if total is not None and spec.size is not None and total != spec.size:
            raise ChecksumError(f"{url}: serves {total} bytes, the published {spec.name} has {spec.size}")
        announce()
        sha, md5, got = hashlib.sha256(), hashlib.md5(), 0
        expected = total if total is not None else spec.size
        with atomic_output(dest) as out:
            try:
                while block := response.read(CHUNK):
                    sha.update(block)
                    md5.update(block)
                    out.write(block)
                    got += len(block)
            except (OSError, http.client.HTTPException) as exc:  # reset, timeout, truncated chunked body
                raise DownloadError(f"{url}: transfer interrupted after {got} of {expected or '?'} bytes "
                                    f"({type(exc).__name__}); nothing was kept") from None
            if expected is not None and got < expected:
                raise DownloadError(f"{url}: transfer interrupted after {got} of {expected} bytes (the server "
                                    "closed the connection); nothing was kept")
            why = mismatch(spec, sha.hexdigest(), md5.hexdigest(), size=got)
            if why is not None:
                raise ChecksumError(f"{spec.name} from {url}: {why}; nothing was kept")


def fetch(spec: PublishedFile, dest: Path, mirrors: Iterable[str], *, timeout: float = 30,
          say: Callable[[str], None] = _say, what: str = "") -> str:
    """Download ``spec`` into ``dest`` from the first mirror that delivers it verified; the address used.

    Raises :class:`ChecksumError` when a mirror served other bytes and none served the right ones, else
    :class:`DownloadError` (one line per mirror, joined by ``; ``). ``say`` hears, once the server answers, what
    is fetched from where to where."""
    errors: list[str] = []
    refused: list[str] = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + spec.name
        size = f", {spec.size / 1e6:.1f} MB" if spec.size else ""

        def announce(url: str = url, size: str = size) -> None:
            say(f"  downloading {what or spec.name} ({spec.name}{size}) from {url} into {dest.parent} "
                "(once: later runs read it there)")

        try:
            _fetch_one(url, spec, dest, timeout, announce)
            return url
        except ChecksumError as exc:
            refused.append(str(exc))
        except DownloadError as exc:
            errors.append(str(exc))
        except urllib.error.HTTPError as exc:
            errors.append(f"{url}: HTTP {exc.code} {exc.reason}")
        except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError, refused, timeout, bad URL
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            errors.append(f"{url}: {reason}")
    if refused:
        raise ChecksumError("; ".join(refused + errors))
    raise DownloadError("; ".join(errors) or f"{spec.name}: no mirror to download it from")
