"""fashion-mnist and kmnist: tiny IDX .gz files made here, served on 127.0.0.1, in the data dir, or shipped by an
installed distribution; every path verified before it is parsed."""

from __future__ import annotations

import gzip
import hashlib
import struct
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from sepbench.datasets import base, idx_sets
from sepbench.datasets.base import ChecksumError, DatasetNotFound
from sepbench.datasets.download import PublishedFile
from sepbench.datasets.idx_sets import FASHION_MNIST, FILES, KMNIST, load_idx_set
from tests.datasets.served import listing, serving

N_TRAIN, N_TEST = 30, 12


def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


@pytest.fixture
def tiny() -> tuple[dict[str, np.ndarray], dict[str, bytes]]:
    """Four tiny IDX arrays and their .gz files, keyed by the published file names."""
    rng = np.random.default_rng(3)
    arrays = dict(zip(FILES, (rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
                              rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
                              rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
                              rng.integers(0, 10, N_TEST, dtype=np.uint8)), strict=True))
    gz = {f"{name}.gz": gzip.compress(idx_bytes(a), mtime=0) for name, a in arrays.items()}
    return arrays, gz


def tiny_set(gz: dict[str, bytes], url: str = "http://127.0.0.1:9/", **changes) -> idx_sets.IdxSet:
    """FASHION_MNIST with the tiny files' checksums (the loader's injection point) and a local mirror."""
    files = tuple(PublishedFile(name, hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest(), len(data))
                  for name, data in gz.items())
    return replace(FASHION_MNIST, files=files, mirrors=(url,), env_var="BENCH_TEST_IDX_URL", **changes)


def check(images: base.SourceImages, arrays: dict[str, np.ndarray]) -> None:
    assert images.name == "fashion-mnist"
    assert images.train.shape == (N_TRAIN, 1, 28, 28) and images.test.shape == (N_TEST, 1, 28, 28)
    assert images.train.dtype == torch.float32 and images.channels == 1 and images.image_size == (28, 28)
    assert torch.equal(images.train[:, 0], torch.from_numpy(arrays[FILES[0]]).float() / 255)
    assert torch.equal(images.test[:, 0], torch.from_numpy(arrays[FILES[2]]).float() / 255)
    assert images.train_labels.dtype == torch.int64
    assert images.train_labels.tolist() == arrays[FILES[1]].tolist()
    assert images.test_labels.tolist() == arrays[FILES[3]].tolist()
    content = [hashlib.sha256(idx_bytes(arrays[name])).hexdigest() for name in FILES]
    assert images.fingerprint == base.fingerprint_of(content)  # the content's, whatever the wrapper


def test_download_then_cache(tmp_path: Path, tiny) -> None:
    arrays, gz = tiny
    with serving(gz) as server:
        spec = tiny_set(gz, server.url)
        images = load_idx_set(spec, tmp_path, timeout=5, say=lambda _: None)
        check(images, arrays)
        assert images.origin == f"download:{server.url}"
        assert listing(tmp_path) == sorted(f"fashion-mnist/{name}" for name in gz)
        assert len(server.requests) == 4
    again = load_idx_set(spec, tmp_path, download=False)  # the server is gone: the verified files are used
    assert again.origin == f"files:{tmp_path / 'fashion-mnist'}" and torch.equal(again.train, images.train)


def test_mismatch_leaves_nothing(tmp_path: Path, tiny) -> None:
    arrays, gz = tiny
    with serving(gz) as server:
        good = tiny_set(gz, server.url)
        wrong = replace(good, files=tuple(replace(f, sha256="0" * 64) for f in good.files))
        with pytest.raises(ChecksumError, match="train-images-idx3-ubyte.gz"):
            load_idx_set(wrong, tmp_path, timeout=5, say=lambda _: None)
        assert listing(tmp_path) == []
        # one wrong file: the verified ones before it are kept whole, the bad one and its temp file are gone
        one = replace(good, files=(*good.files[:2], replace(good.files[2], sha256="f" * 64), good.files[3]))
        with pytest.raises(ChecksumError, match="t10k-images-idx3-ubyte.gz"):
            load_idx_set(one, tmp_path, timeout=5, say=lambda _: None)
    assert listing(tmp_path) == ["fashion-mnist/train-images-idx3-ubyte.gz", "fashion-mnist/train-labels-idx1-ubyte.gz"]


def test_interrupted_download(tmp_path: Path, tiny) -> None:
    _, gz = tiny
    with serving(gz) as server:
        server.truncate.add("train-images-idx3-ubyte.gz")
        with pytest.raises(DatasetNotFound) as info:
            load_idx_set(tiny_set(gz, server.url), tmp_path, timeout=5, say=lambda _: None)
    message = str(info.value)
    assert "transfer interrupted after" in message and "nothing was kept" in message and "\n" not in message
    assert str(tmp_path / "fashion-mnist") in message and "train-images-idx3-ubyte.gz" in message
    assert listing(tmp_path) == []


def test_data_dir_files_come_first_and_are_verified(tmp_path: Path, tiny) -> None:
    arrays, gz = tiny
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for name, data in gz.items():
        (folder / name).write_bytes(data)
    check(load_idx_set(tiny_set(gz), tmp_path, download=False), arrays)
    assert idx_sets.present(tiny_set(gz), tmp_path)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes((arrays[FILES[3]] + 1) % 10), mtime=0))
    with pytest.raises(ChecksumError, match=f"{folder / 't10k-labels-idx1-ubyte.gz'}: not the published"):
        load_idx_set(tiny_set(gz), tmp_path, download=False)
    assert not idx_sets.present(tiny_set(gz), tmp_path)


def test_plain_files_need_a_recorded_content_checksum(tmp_path: Path, tiny) -> None:
    arrays, gz = tiny
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for name, array in arrays.items():
        (folder / name).write_bytes(idx_bytes(array))
    with pytest.raises(DatasetNotFound) as info:  # no content checksum recorded: plain files are not trusted
        load_idx_set(tiny_set(gz), tmp_path, download=False)
    assert ", ".join(gz) in str(info.value) and f"in {folder}/" in str(info.value)
    sums = {name: hashlib.sha256(idx_bytes(a)).hexdigest() for name, a in arrays.items()}
    check(load_idx_set(tiny_set(gz, content_sha256=sums), tmp_path, download=False), arrays)
    with pytest.raises(ChecksumError, match="content SHA-256 differs"):
        load_idx_set(tiny_set(gz, content_sha256=dict(sums, **{FILES[0]: "1" * 64})), tmp_path, download=False)


def make_distribution(site: Path, name: str, files: dict[str, bytes]) -> None:
    """An installed distribution as pip leaves one: files under its package, listed in RECORD."""
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    record = [f"{name}-0.1.dist-info/METADATA,,", f"{name}-0.1.dist-info/RECORD,,"]
    for file_name, data in files.items():
        path = site / name / "data" / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        record.append(f"{name}/data/{file_name},sha256=,{len(data)}")
    (info / "RECORD").write_text("\n".join(record) + "\n")


def test_files_shipped_by_an_installed_package(tmp_path: Path, tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays, gz = tiny
    site = tmp_path / "site"
    other = {name: gzip.compress(data[::-1], mtime=0) for name, data in gz.items()}  # same names, other bytes
    make_distribution(site, "decoy_data", other)
    make_distribution(site, "tiny_fashion_data", gz)
    monkeypatch.setattr(sys, "path", [str(site), *sys.path])
    data_dir = tmp_path / "data"
    images = load_idx_set(tiny_set(gz), data_dir, download=False)
    check(images, arrays)
    assert images.origin == "package tiny_fashion_data 0.1"
    assert idx_sets.present(tiny_set(gz), data_dir)
    assert not data_dir.exists()  # nothing was copied or cached


def test_not_found_says_what_to_put_where(tmp_path: Path) -> None:
    dataset = base._DATASETS["kmnist"]()
    assert not dataset.present(tmp_path)
    message = dataset.missing_message(tmp_path)
    assert message.startswith("kmnist:") and f"in {tmp_path / 'kmnist'}/" in message and "\n" not in message
    assert all(spec.name in message for spec in KMNIST.files)
    with pytest.raises(DatasetNotFound, match="download disabled"):
        dataset.load(tmp_path, download=False)


def test_registered_sets() -> None:
    for name, idx_set in (("fashion-mnist", FASHION_MNIST), ("kmnist", KMNIST)):
        cls = base._DATASETS[name]
        assert cls.idx_set is idx_set and cls.name == name
        assert (cls.image_size, cls.channels, cls.train_count, cls.test_count, cls.labelled) == \
            ((28, 28), 1, 60_000, 10_000, True)
        assert [spec.name for spec in idx_set.files] == [f"{f}.gz" for f in FILES]
        assert idx_set.env_var in cls().source()
