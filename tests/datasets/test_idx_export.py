"""MNIST exported as IDX files (how it travels to a machine without network) loads back as the same images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sepbench.datasets.idx_export import export_mnist, write_idx
from sepbench.datasets.mnist import load_mnist, read_idx


def test_exported_idx_files_load_as_the_same_mnist(tmp_path):
    written = export_mnist(tmp_path / "mnist")
    names = sorted(p.name for p in written)
    assert [n for n in names if n.endswith(".gz")] == sorted(
        ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz"])
    assert sum(p.stat().st_size for p in written if p.suffix == ".gz") < 12e6
    here, there = load_mnist(), load_mnist(tmp_path / "mnist", download=False)
    assert there.origin.startswith("idx:")
    for field in ("train", "train_labels", "test", "test_labels"):
        assert torch.equal(getattr(here, field), getattr(there, field)), field
    again = export_mnist(tmp_path / "again", tmp_path / "mnist")  # from IDX files too; same bytes
    for path in again:
        assert path.read_bytes() == (tmp_path / "mnist" / path.name).read_bytes(), path.name


def test_write_idx_round_trips_and_refuses_other_dtypes(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a.idx", "a.idx.gz"):
        write_idx(tmp_path / name, array)
        assert np.array_equal(read_idx(tmp_path / name), array)
    assert (tmp_path / "a.idx").read_bytes()[:4] == b"\0\0\x08\x03"
    with pytest.raises(ValueError, match="uint8"):
        write_idx(tmp_path / "b.idx", array.astype(np.float32))
