"""cifar10 from a tiny binary-version archive made here: served on 127.0.0.1, verified, read without extracting,
cached; grey (BT.601) and colour; unsafe archives refused."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from sepbench.datasets import base, cifar10
from sepbench.datasets.base import ChecksumError, DatasetNotFound
from sepbench.datasets.cifar10 import FOLDER, RECORD, TEST_BATCHES, TRAIN_BATCHES, load_cifar10, read_archive
from sepbench.datasets.download import PublishedFile
from sepbench.errors import UserError
from tests.datasets.served import listing, serving

PER_BATCH, N_TEST = 2, 3


def records(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, bytes]:
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    pixels = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    data = np.concatenate([labels[:, None], pixels.reshape(n, -1)], axis=1).tobytes()
    return pixels, labels, data


def make_archive(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


@pytest.fixture
def tiny() -> tuple[dict[str, np.ndarray], bytes]:
    """A tiny archive in the binary version's layout, and the pixels and labels in it."""
    rng = np.random.default_rng(5)
    members, train = {f"{FOLDER}/batches.meta.txt": b"airplane\nautomobile\n"}, []
    for name in TRAIN_BATCHES:
        pixels, labels, members[f"{FOLDER}/{name}"] = records(rng, PER_BATCH)
        train.append((pixels, labels))
    test_pixels, test_labels, members[f"{FOLDER}/{TEST_BATCHES[0]}"] = records(rng, N_TEST)
    arrays = {"train": np.concatenate([p for p, _ in train]), "train_labels": np.concatenate([y for _, y in train]),
              "test": test_pixels, "test_labels": test_labels}
    return arrays, make_archive(members)


def spec(data: bytes) -> PublishedFile:
    return PublishedFile(cifar10.ARCHIVE.name, hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest(),
                         len(data))


def luma(pixels: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(pixels).double()
    return ((0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]) / 255).unsqueeze(1).float()


def test_download_grey_colour_and_cache(tmp_path: Path, tiny) -> None:
    arrays, data = tiny
    with serving({cifar10.ARCHIVE.name: data}) as server:
        grey = load_cifar10(tmp_path, base_url=server.url, archive=spec(data), timeout=5, say=lambda _: None)
        assert grey.origin == f"download:{server.url}{cifar10.ARCHIVE.name}"
        assert len(server.requests) == 1
    assert grey.train.shape == (5 * PER_BATCH, 1, 32, 32) and grey.test.shape == (N_TEST, 1, 32, 32)
    assert torch.allclose(grey.train, luma(arrays["train"]), atol=1e-6)
    assert torch.allclose(grey.test, luma(arrays["test"]), atol=1e-6)
    assert grey.train_labels.tolist() == arrays["train_labels"].tolist()
    assert grey.test_labels.dtype == torch.int64 and grey.test_labels.tolist() == arrays["test_labels"].tolist()
    cache = cifar10.cache_path(tmp_path / "cifar10", spec(data))
    assert listing(tmp_path) == sorted([f"cifar10/{cifar10.ARCHIVE.name}", f"cifar10/{cache.name}"])

    # the second load needs neither the server nor the archive: the verified cache
    (tmp_path / "cifar10" / cifar10.ARCHIVE.name).unlink()
    colour = load_cifar10(tmp_path, color=True, download=False, archive=spec(data))
    assert colour.origin == f"cache:{cache}"
    assert colour.train.shape == (5 * PER_BATCH, 3, 32, 32) and colour.channels == 3
    assert torch.equal(colour.train, torch.from_numpy(arrays["train"]).float() / 255)  # R, G, B planes in order
    assert torch.equal(colour.test_labels, grey.test_labels) and colour.fingerprint != grey.fingerprint


def test_damaged_cache_is_rebuilt_from_the_archive(tmp_path: Path, tiny) -> None:
    arrays, data = tiny
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / cifar10.ARCHIVE.name).write_bytes(data)
    first = load_cifar10(tmp_path, download=False, archive=spec(data))
    assert first.origin == f"files:{tmp_path / 'cifar10' / cifar10.ARCHIVE.name}"
    cache = cifar10.cache_path(tmp_path / "cifar10", spec(data))
    blob = bytearray(cache.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    cache.write_bytes(bytes(blob))
    again = load_cifar10(tmp_path, download=False, archive=spec(data))
    assert again.origin == first.origin and torch.equal(again.train, first.train)


def test_mismatch_leaves_nothing(tmp_path: Path, tiny) -> None:
    _, data = tiny
    wrong = PublishedFile(cifar10.ARCHIVE.name, "0" * 64, None, len(data))
    with serving({cifar10.ARCHIVE.name: data}) as server, pytest.raises(ChecksumError, match="SHA-256"):
        load_cifar10(tmp_path, base_url=server.url, archive=wrong, timeout=5, say=lambda _: None)
    assert listing(tmp_path) == []


def test_interrupted_download_leaves_nothing(tmp_path: Path, tiny) -> None:
    _, data = tiny
    with serving({cifar10.ARCHIVE.name: data}) as server:
        server.truncate.add(cifar10.ARCHIVE.name)
        with pytest.raises(DatasetNotFound, match=f"transfer interrupted after {len(data) // 2} of {len(data)}"):
            load_cifar10(tmp_path, base_url=server.url, archive=spec(data), timeout=5, say=lambda _: None)
    assert listing(tmp_path) == []


def test_local_archive_is_verified_before_it_is_opened(tmp_path: Path, tiny) -> None:
    _, data = tiny
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / cifar10.ARCHIVE.name).write_bytes(b"not an archive")
    with pytest.raises(ChecksumError, match="not the published cifar-10-binary.tar.gz"):
        load_cifar10(tmp_path, download=False, archive=spec(data))
    assert listing(tmp_path) == [f"cifar10/{cifar10.ARCHIVE.name}"]  # no cache made from it


@pytest.mark.parametrize("evil", ["../evil.bin", "/tmp/evil.bin", f"{FOLDER}/../../evil.bin"])
def test_member_path_traversal_is_refused(tmp_path: Path, tiny, evil: str) -> None:
    arrays, _ = tiny
    members = {f"{FOLDER}/{name}": bytes(RECORD) for name in TRAIN_BATCHES + TEST_BATCHES}
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(make_archive({evil: b"x" * RECORD, **members}))
    with pytest.raises(ValueError, match="unsafe member path"):
        read_archive(archive)
    assert not (tmp_path.parent / "evil.bin").exists()
    # and through the loader, with the archive's own checksum: refused, nothing cached
    (tmp_path / "data" / "cifar10").mkdir(parents=True)
    (tmp_path / "data" / "cifar10" / cifar10.ARCHIVE.name).write_bytes(archive.read_bytes())
    with pytest.raises(ValueError, match="unsafe member path"):
        load_cifar10(tmp_path / "data", download=False, archive=spec(archive.read_bytes()))
    assert listing(tmp_path / "data") == [f"cifar10/{cifar10.ARCHIVE.name}"]


def test_links_and_broken_records_are_refused(tmp_path: Path) -> None:
    members = {f"{FOLDER}/{name}": bytes(RECORD) for name in TRAIN_BATCHES[1:] + TEST_BATCHES}
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(make_archive(members, links={f"{FOLDER}/{TRAIN_BATCHES[0]}": "/etc/passwd"}))
    with pytest.raises(ValueError, match="not a regular file"):
        read_archive(archive)
    archive.write_bytes(make_archive({**members, f"{FOLDER}/{TRAIN_BATCHES[0]}": bytes(RECORD + 1)}))
    with pytest.raises(ValueError, match="not whole 3073-byte records"):
        read_archive(archive)
    archive.write_bytes(make_archive(members))
    with pytest.raises(ValueError, match="no data_batch_1.bin"):
        read_archive(archive)


def test_options_and_registration(tmp_path: Path) -> None:
    cls = base._DATASETS["cifar10"]
    assert (cls.image_size, cls.train_count, cls.test_count, cls.labelled) == ((32, 32), 50_000, 10_000, True)
    assert cls().channels == 1 and cls(color=True).channels == 3 and cls(color=False).channels == 1
    with pytest.raises(UserError, match="color must be true or false"):
        cls(color="yes")
    with pytest.raises(UserError, match="unknown option"):
        cls(colour=True)
    assert not cls().present(tmp_path)
    message = cls().missing_message(tmp_path)
    assert "put cifar-10-binary.tar.gz (the binary version" in message and f"in {tmp_path / 'cifar10'}/" in message
