"""CIFAR-10 from its binary version (``cifar-10-binary.tar.gz``): 32 × 32, 50,000 / 10,000 images, labels 0–9.

Never the Python version: its batches are pickles, and nothing downloaded is unpickled here. The archive is
looked for in ``<data dir>/cifar10/``, then among the files installed packages ship, then downloaded there; its
SHA-256 and MD5 are checked before it is opened. The six batch members are read from the tar stream without
extracting anything (a member with an absolute or ``..`` path, or a link where a batch should be, is refused).
Each record is one label byte then 3,072 pixel bytes: the red, green and blue 32 × 32 planes, rows in order.
Grey by default, as ITU-R BT.601 luma (Y = 0.299 R + 0.587 G + 0.114 B on the [0, 1] values, not rounded);
``color: true`` keeps the 3 channels. The parsed uint8 arrays are cached in ``<data dir>/cifar10/`` (an ``.npz``
without pickles, written atomically, with a digest of its arrays checked on every read).

Checksums: the MD5 is the one on the dataset's page (https://www.cs.toronto.edu/~kriz/cifar.html); the SHA-256
of the same archive (170,052,171 bytes) is the one ankane/torchvision-ruby (``datasets/cifar10.rb``) and
JuliaML's MLDatasets.jl record.
"""

from __future__ import annotations

import hashlib
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from sepbench.datasets.base import (
    ChecksumError,
    Dataset,
    DatasetNotFound,
    SourceImages,
    fingerprint_of,
    register_dataset,
)
from sepbench.datasets.download import DownloadError, PublishedFile, fetch, mirror_list, verify
from sepbench.datasets.shipped import shipped_files
from sepbench.files import atomic_output

ARCHIVE = PublishedFile("cifar-10-binary.tar.gz", "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                        "c32a1d4ab5d03f1284b67883e8d87530", 170_052_171)
MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
ENV_VAR = "BENCH_CIFAR10_URL"
FOLDER = "cifar-10-batches-bin"
TRAIN_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_BATCHES = ("test_batch.bin",)
RECORD = 1 + 3 * 32 * 32
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601
_CACHE_VERSION = 1
_KEYS = ("train", "train_labels", "test", "test_labels")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _member_key(name: str, archive: Path) -> str:
    """The member's path inside the archive, refused when it could point outside it."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name:
        raise ValueError(f"{archive}: unsafe member path {name!r} in the archive; refused")
    return "/".join(part for part in path.parts if part != ".")


def read_archive(archive: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The batches of a (verified) binary CIFAR-10 archive: uint8 images (N, 3, 32, 32), uint8 labels (N,)."""
    wanted = {f"{FOLDER}/{name}": name for name in TRAIN_BATCHES + TEST_BATCHES}
    batches: dict[str, np.ndarray] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                key = _member_key(member.name, archive)
                if key not in wanted:
                    continue
                if not member.isreg():
                    raise ValueError(f"{archive}: member {member.name} is not a regular file; refused")
                if key in batches or member.size == 0 or member.size % RECORD:
                    raise ValueError(f"{archive}: member {member.name} is duplicated or not whole "
                                     f"{RECORD}-byte records ({member.size} bytes)")
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                if len(data) != member.size:
                    raise ValueError(f"{archive}: member {member.name} is truncated")
                batches[key] = np.frombuffer(data, np.uint8).reshape(-1, RECORD)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ValueError(f"{archive}: not a readable tar.gz archive ({exc})") from None
    missing = sorted(wanted[k] for k in wanted if k not in batches)
    if missing:
        raise ValueError(f"{archive}: no {', '.join(missing)} under {FOLDER}/: not the binary CIFAR-10 archive")

    def split(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        records = np.concatenate([batches[f"{FOLDER}/{name}"] for name in names])
        labels = records[:, 0].copy()
        if len(labels) and labels.max() > 9:
            raise ValueError(f"{archive}: labels outside 0..9")
        return np.ascontiguousarray(records[:, 1:]).reshape(-1, 3, 32, 32), labels

    return *split(TRAIN_BATCHES), *split(TEST_BATCHES)


def _digest(arrays: tuple[np.ndarray, ...]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def cache_path(folder: Path, archive: PublishedFile = ARCHIVE) -> Path:
    """The parsed-array cache of the archive with these checksums."""
    return folder / f"cifar10-{archive.sha256[:16]}-v{_CACHE_VERSION}.npz"


def _read_cache(path: Path) -> tuple[np.ndarray, ...] | None:
    """The cached arrays if the cache is whole and its digest matches, else None (it is then rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = tuple(npz[k] for k in _KEYS)
            digest = str(npz["digest"])
    except (OSError, KeyError, ValueError, zlib.error, zipfile.BadZipFile, EOFError):
        return None
    if any(a.dtype != np.uint8 for a in arrays) or _digest(arrays) != digest:
        return None
    return arrays


def _write_cache(path: Path, arrays: tuple[np.ndarray, ...]) -> None:
    try:
        with atomic_output(path) as handle:
            np.savez(handle, **dict(zip(_KEYS, arrays, strict=True)), digest=np.array(_digest(arrays)))
    except OSError:
        pass  # the cache is an optimisation; a read-only data dir is fine


def _shipped(archive: PublishedFile) -> tuple[Path, str] | None:
    for path, label in shipped_files([archive.name])[archive.name]:
        try:
            verify(path, archive)
        except (ChecksumError, OSError):
            continue
        return path, f"package {label}"
    return None


def missing_message(data_dir: Path, reason: str = "") -> str:
    """One line: which file to put where."""
    folder = Path(data_dir) / "cifar10"
    why = f" ({reason})" if reason else ""
    return (f"cifar10: not in {folder} nor shipped by an installed package{why}: put {ARCHIVE.name} (the binary "
            f"version, from {MIRRORS[0]}) in {folder}/, or allow the download")


def to_images(x: np.ndarray, color: bool) -> torch.Tensor:
    """uint8 (N, 3, 32, 32) → float32 in [0, 1]: the 3 channels, or (N, 1, 32, 32) BT.601 luma."""
    if color:
        return torch.from_numpy(x).to(torch.float32).div_(255.0)
    out = torch.empty((len(x), 1, 32, 32), dtype=torch.float32)
    for start in range(0, len(x), 8192):  # chunked, in place: a float copy of all 3 channels would be 600 MB
        block, grey = torch.from_numpy(x[start:start + 8192]), out[start:start + 8192, 0]
        grey.copy_(block[:, 0]).mul_(LUMA[0] / 255.0)
        grey.add_(block[:, 1].to(torch.float32), alpha=LUMA[1] / 255.0)
        grey.add_(block[:, 2].to(torch.float32), alpha=LUMA[2] / 255.0)
    return out.clamp_(0.0, 1.0)


def load_cifar10(data_dir: Path, *, color: bool = False, download: bool = True, base_url: str | None = None,
                 archive: PublishedFile = ARCHIVE, timeout: float = 30,
                 say: Callable[[str], None] = _say) -> SourceImages:
    """CIFAR-10 from the cache, the archive in ``<data_dir>/cifar10/``, a package, or a verified download."""
    folder = Path(data_dir).expanduser() / "cifar10"
    cache = cache_path(folder, archive)
    arrays = _read_cache(cache)
    origin = f"cache:{cache}"
    if arrays is None:
        path = folder / archive.name
        if path.is_file():
            verify(path, archive)
            origin = f"files:{path}"
        elif (shipped := _shipped(archive)) is not None:
            path, origin = shipped
        elif not download:
            raise DatasetNotFound(missing_message(data_dir, "download disabled"))
        else:
            try:
                url = fetch(archive, path, mirror_list(ENV_VAR, MIRRORS, base_url), timeout=timeout, say=say,
                            what="CIFAR-10 (binary version)")
            except DownloadError as exc:
                raise DatasetNotFound(missing_message(data_dir, f"download failed: {exc}")) from None
            verify(path, archive)  # what is opened is what is on disk now
            origin = f"download:{url}"
        arrays = read_archive(path)
        _write_cache(cache, arrays)
    tr_x, tr_y, te_x, te_y = arrays
    fingerprint = fingerprint_of([archive.sha256.lower(), "color" if color else "bt601-luma"])
    return SourceImages("cifar10", to_images(tr_x, color), torch.from_numpy(tr_y.astype(np.int64)),
                        to_images(te_x, color), torch.from_numpy(te_y.astype(np.int64)), origin, fingerprint)


@register_dataset("cifar10")
class Cifar10(Dataset):
    """CIFAR-10: 32 × 32 photographs in 10 classes; grey (BT.601 luma) unless ``color: true``."""

    description = "CIFAR-10: 32×32 photographs in 10 classes (binary version; grey BT.601 luma, or color: true)"
    image_size = (32, 32)
    channels = 1
    train_count = 50_000
    test_count = 10_000
    labelled = True
    options_help = {"color": "true: 3 channels (R, G, B); false (default): one grey channel, BT.601 luma"}

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        color = self.options.get("color", False)
        if not isinstance(color, bool):
            from sepbench.errors import UserError

            raise UserError(f"dataset 'cifar10': option color must be true or false, got {color!r}")
        self.color = color
        self.channels = 3 if color else 1

    def source(self) -> str:
        return (f"<data dir>/cifar10/{ARCHIVE.name}, a package that ships it, or a download from {MIRRORS[0]} "
                f"(${ENV_VAR}); SHA-256 verified, never the pickle version")

    def present(self, data_dir: Path) -> bool:
        folder = Path(data_dir) / "cifar10"
        if cache_path(folder).is_file() and _read_cache(cache_path(folder)) is not None:
            return True
        try:
            if (folder / ARCHIVE.name).is_file():
                verify(folder / ARCHIVE.name, ARCHIVE)
                return True
        except (ChecksumError, OSError):
            return False
        return _shipped(ARCHIVE) is not None

    def missing_message(self, data_dir: Path) -> str:
        return missing_message(data_dir)

    def load(self, data_dir: Path, *, download: bool = True) -> SourceImages:
        return load_cifar10(data_dir, color=self.color, download=download)
