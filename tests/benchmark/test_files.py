"""Atomic writes: a file is wholly the new bytes or wholly the old ones, never a half, and no temp file stays."""

from __future__ import annotations

import pytest

from sepbench.files import atomic_output, atomic_write


def test_atomic_write_makes_missing_folders_and_a_readable_file(tmp_path):
    path = tmp_path / "a" / "b" / "cell.json"
    atomic_write(path, b"{}")
    assert path.read_bytes() == b"{}"
    assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["cell.json"]


def test_an_error_while_writing_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="cut"), atomic_output(path) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("cut")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_ctrl_c_while_writing_leaves_nothing_behind(tmp_path):
    path = tmp_path / "new.bin"
    with pytest.raises(KeyboardInterrupt), atomic_output(path) as handle:
        handle.write(b"x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
