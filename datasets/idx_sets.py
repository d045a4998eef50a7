"""Fashion-MNIST and Kuzushiji-MNIST: MNIST's IDX format, 28 × 28 grey, 60,000 / 10,000 images, labels 0–9.

Each set's four published ``.gz`` files are looked for, in order: in ``<data dir>/<set>/``, then among the files
that installed Python packages ship (:mod:`sepbench.datasets.shipped`), then downloaded into ``<data dir>/<set>/``
(:mod:`sepbench.datasets.download`). Wherever a file comes from, its SHA-256 (and the authors' MD5) is checked
before it is parsed; nothing is unpickled.

Checksums. The MD5s are the authors' own: the Fashion-MNIST README (zalandoresearch/fashion-mnist, "Get the
data") and KMNIST's, as torchvision's ``datasets/mnist.py`` lists them. The SHA-256s of the same ``.gz`` files are
those of torchvision's ``prototype/datasets/_builtin/mnist.py`` (``_CHECKSUMS``), identical in
ankane/torchvision-ruby; the sizes are those the servers report. A plain (uncompressed) IDX file is accepted only
where the SHA-256 of the uncompressed content is recorded in ``content_sha256``: for these two sets it is not yet
(no network here to compute it from the verified files), so they are taken as the published ``.gz`` files.
"""

from __future__ import annotations

import gzip
import hashlib
import sys
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sepbench.datasets.base import (
    ChecksumError,
    Dataset,
    DatasetNotFound,
    SourceImages,
    fingerprint_of,
    register_dataset,
    sha256_file,
)
from sepbench.datasets.download import DownloadError, PublishedFile, fetch, mirror_list, verify
from sepbench.datasets.mnist import read_idx
from sepbench.datasets.shipped import shipped_files

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class IdxSet:
    """An MNIST-like set published as four IDX ``.gz`` files (in :data:`FILES` order)."""

    name: str
    title: str
    files: tuple[PublishedFile, PublishedFile, PublishedFile, PublishedFile]
    mirrors: tuple[str, ...]
    env_var: str
    content_sha256: Mapping[str, str] = field(default_factory=dict)  # plain IDX name → SHA-256, where recorded


FASHION_MNIST = IdxSet(
    "fashion-mnist", "Fashion-MNIST (Zalando article images)",
    (PublishedFile("train-images-idx3-ubyte.gz",
                   "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                   "8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880),
     PublishedFile("train-labels-idx1-ubyte.gz",
                   "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                   "25c81989df183df01b3e8a0aad5dffbe", 29515),
     PublishedFile("t10k-images-idx3-ubyte.gz",
                   "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                   "bef4ecab320f06d8554ea6380940ec79", 4422102),
     PublishedFile("t10k-labels-idx1-ubyte.gz",
                   "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                   "bb300cfdad3c16e7a12a480ee83cd310", 5148)),
    ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
     "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
    "BENCH_FASHION_MNIST_URL")

KMNIST = IdxSet(
    "kmnist", "Kuzushiji-MNIST (cursive Japanese characters, ROIS-CODH)",
    (PublishedFile("train-images-idx3-ubyte.gz",
                   "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
                   "bdb82020997e1d708af4cf47b453dcf7", 18165135),
     PublishedFile("train-labels-idx1-ubyte.gz",
                   "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
                   "e144d726b3acfaa3e44228e80efcd344", 29497),
     PublishedFile("t10k-images-idx3-ubyte.gz",
                   "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
                   "5c965bf0a639b31b8f53240b1b52f4d7", 3041136),
     PublishedFile("t10k-labels-idx1-ubyte.gz",
                   "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
                   "7320c461ea6c1c855c0b718fb2a4b134", 5120)),
    ("https://codh.rois.ac.jp/kmnist/dataset/kmnist/", "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"),
    "BENCH_KMNIST_URL")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _plain_content_ok(path: Path, want: str | None) -> bool:
    """Whether a plain (uncompressed) IDX file has the recorded content checksum (never, if none is recorded)."""
    return want is not None and sha256_file(path) == want.lower()


def _local_paths(idx_set: IdxSet, folder: Path) -> list[Path | None]:
    """Per file, the verified file in ``folder`` (``.gz`` as published, or plain with a recorded content
    checksum), None where absent. A file that is there but wrong raises :class:`ChecksumError`."""
    found: list[Path | None] = []
    for spec, plain in zip(idx_set.files, FILES, strict=True):
        gz, raw = folder / spec.name, folder / plain
        if gz.is_file():
            verify(gz, spec)
            found.append(gz)
        elif raw.is_file() and plain in idx_set.content_sha256:
            if not _plain_content_ok(raw, idx_set.content_sha256[plain]):
                raise ChecksumError(f"{raw}: not the published {plain} (content SHA-256 differs): replace it, or "
                                    "remove it to fetch the .gz file")
            found.append(raw)
        else:
            found.append(None)
    return found


def _shipped_paths(idx_set: IdxSet) -> tuple[list[Path], str] | None:
    """The four files as an installed package ships them (each verified), and which package(s); else None."""
    names = [spec.name for spec in idx_set.files] + [plain for plain in FILES if plain in idx_set.content_sha256]
    candidates = shipped_files(names)
    paths, labels = [], []
    for spec, plain in zip(idx_set.files, FILES, strict=True):
        chosen = None
        for path, label in candidates.get(spec.name, []):
            try:
                verify(path, spec)
            except (ChecksumError, OSError):
                continue  # a file of that name but other bytes is not this set's file
            chosen = path, label
            break
        if chosen is None:
            chosen = next(((path, label) for path, label in candidates.get(plain, [])
                           if _plain_content_ok(path, idx_set.content_sha256.get(plain))), None)
        if chosen is None:
            return None
        paths.append(chosen[0])
        labels.append(chosen[1])
    return paths, "package " + ", ".join(dict.fromkeys(labels))


def present(idx_set: IdxSet, data_dir: Path) -> bool:
    """Whether the set loads here without a network (verified files in the data dir, or shipped by a package)."""
    try:
        if all(p is not None for p in _local_paths(idx_set, Path(data_dir) / idx_set.name)):
            return True
    except (ChecksumError, OSError):
        return False
    return _shipped_paths(idx_set) is not None


def missing_message(idx_set: IdxSet, data_dir: Path, reason: str = "") -> str:
    """One line: which files to put where."""
    folder = Path(data_dir) / idx_set.name
    names = ", ".join(spec.name for spec in idx_set.files)
    why = f" ({reason})" if reason else ""
    return (f"{idx_set.name}: not in {folder} nor shipped by an installed package{why}: put the 4 published files "
            f"{names} (from {idx_set.mirrors[0]}) in {folder}/, or allow the download")


def _idx_sha256(array: np.ndarray) -> str:
    """SHA-256 of a uint8 array written as an IDX file: the uncompressed content, whatever the wrapper."""
    digest = hashlib.sha256(bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes())
    digest.update(np.ascontiguousarray(array, np.uint8).tobytes())
    return digest.hexdigest()


def _parse(idx_set: IdxSet, paths: list[Path], origin: str) -> SourceImages:
    """The verified files as float32 (N, 1, 28, 28) images in [0, 1] and int64 labels."""
    try:
        arrays = [read_idx(path) for path in paths]
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ValueError(f"{idx_set.name}: {exc}") from None
    tr_x, tr_y, te_x, te_y = arrays
    for x, y, split in ((tr_x, tr_y, "train"), (te_x, te_y, "test")):
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28) or y.dtype != np.uint8 \
                or y.shape != (len(x),):
            raise ValueError(f"{origin}: bad {idx_set.name} {split} files: images {x.shape} {x.dtype}, "
                             f"labels {y.shape} {y.dtype}")
        if len(y) and y.max() > 9:
            raise ValueError(f"{origin}: {idx_set.name} {split} labels outside 0..9")

    def images(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32).div_(255.0).unsqueeze(1)

    def labels(y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(y.astype(np.int64))

    fingerprint = fingerprint_of([_idx_sha256(a) for a in arrays])
    return SourceImages(idx_set.name, images(tr_x), labels(tr_y), images(te_x), labels(te_y), origin, fingerprint)


def load_idx_set(idx_set: IdxSet, data_dir: Path, *, download: bool = True, base_url: str | None = None,
                 timeout: float = 30, say: Callable[[str], None] = _say) -> SourceImages:
    """The set from ``<data_dir>/<name>/``, else a package that ships it, else a verified download (if allowed).

    Raises :class:`DatasetNotFound` (one line: which files to put where) or :class:`ChecksumError`."""
    folder = Path(data_dir).expanduser() / idx_set.name
    local = _local_paths(idx_set, folder)
    if all(p is not None for p in local):
        return _parse(idx_set, [p for p in local if p is not None], f"files:{folder}")
    shipped = _shipped_paths(idx_set)
    if shipped is not None:
        return _parse(idx_set, shipped[0], shipped[1])
    if not download:
        raise DatasetNotFound(missing_message(idx_set, data_dir, "download disabled"))
    mirrors = mirror_list(idx_set.env_var, idx_set.mirrors, base_url)
    used = []
    for spec, path in zip(idx_set.files, local, strict=True):
        if path is None:
            try:
                used.append(fetch(spec, folder / spec.name, mirrors, timeout=timeout, say=say, what=idx_set.title))
            except DownloadError as exc:
                raise DatasetNotFound(missing_message(idx_set, data_dir, f"download failed: {exc}")) from None
    local = _local_paths(idx_set, folder)  # verified again: what is parsed is what is on disk now
    base = used[0].rsplit("/", 1)[0] + "/" if used else str(folder)
    return _parse(idx_set, [p for p in local if p is not None], f"download:{base}")


class _IdxDataset(Dataset):
    """A registered IDX set: 28 × 28 grey, labelled, 60,000 / 10,000 images."""

    idx_set: IdxSet
    image_size = (28, 28)
    channels = 1
    train_count = 60_000
    test_count = 10_000
    labelled = True

    def source(self) -> str:
        return (f"<data dir>/{self.idx_set.name}/ (the 4 published .gz IDX files), a package that ships them, or "
                f"a download from {self.idx_set.mirrors[0]} (${self.idx_set.env_var}); SHA-256 verified")

    def present(self, data_dir: Path) -> bool:
        return present(self.idx_set, data_dir)

    def missing_message(self, data_dir: Path) -> str:
        return missing_message(self.idx_set, data_dir)

    def load(self, data_dir: Path, *, download: bool = True) -> SourceImages:
        return load_idx_set(self.idx_set, data_dir, download=download)


@register_dataset("fashion-mnist")
class FashionMnist(_IdxDataset):
    description = "Fashion-MNIST: Zalando article images in 10 classes (MNIST's format and size)"
    idx_set = FASHION_MNIST


@register_dataset("kmnist")
class Kmnist(_IdxDataset):
    description = "Kuzushiji-MNIST: cursive Japanese (hiragana) characters in 10 classes (MNIST's format and size)"
    idx_set = KMNIST
