"""scripts/device-tree.sh: what a device call would carry, and committed results kept out of one call and put back,
on a real git repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="bash, GNU du and sed")
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "device-tree.sh"


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def tree(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=repo, capture_output=True, text=True, timeout=60)


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "reports" / "run").mkdir(parents=True)
    (repo / "code.py").write_bytes(b"x" * 1000)
    (repo / "reports" / "run" / "cell.parquet").write_bytes(b"r" * 50_000)
    (repo / ".gitignore").write_text("/.data/\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "start")
    return repo


def test_size_counts_tracked_untracked_and_carried_files_against_the_limit(repo):
    (repo / "notes.txt").write_bytes(b"n" * 200)  # untracked, not ignored: travels
    (repo / ".data").mkdir()
    (repo / ".data" / "mnist.idx").write_bytes(b"m" * 3000)  # ignored: travels only when carried
    base = 1000 + 50_000 + len("/.data/\n") + 200
    plain = tree(repo, "size")
    assert plain.returncode == 0 and plain.stdout.startswith(f"{base} bytes would travel"), plain.stdout
    carried = tree(repo, "size", ".data")
    assert carried.stdout.startswith(f"{base + 3000} bytes would travel"), carried.stdout
    with open(repo / ".data" / "big.bin", "wb") as big:  # sparse: 65 MiB of apparent size, no disk
        big.truncate(65 * 1024 * 1024)
    over = tree(repo, "size", ".data")
    assert over.returncode == 1 and "over the limit" in over.stderr, over.stderr


def test_hide_keeps_the_files_out_of_a_call_and_restore_puts_them_back(repo):
    hidden = tree(repo, "hide")
    assert hidden.returncode == 0, hidden.stderr
    assert "51008 → 1008 bytes" in hidden.stdout, hidden.stdout  # .gitignore (8) + code.py; reports/ stays behind
    assert git(repo, "ls-files").split() == [".gitignore", "code.py"]
    assert (repo / "reports" / "run" / "cell.parquet").stat().st_size == 50_000  # the file itself is untouched
    assert tree(repo, "hide").returncode == 2  # not twice
    (repo / "reports" / "run" / "new.json").write_text("{}")  # e.g. cells unpacked from the call: ignored meanwhile
    assert tree(repo, "size").stdout.startswith("1008 bytes")
    restored = tree(repo, "restore")
    assert restored.returncode == 0, restored.stderr
    assert "restored: reports" in restored.stdout and "1 file(s)" in restored.stdout, restored.stdout
    assert git(repo, "ls-files").split() == [".gitignore", "code.py", "reports/run/cell.parquet"]
    assert git(repo, "status", "--porcelain").splitlines() == ["?? reports/run/new.json"]  # nothing staged, new shown
    assert "device-tree.sh" not in (repo / ".git" / "info" / "exclude").read_text()
    again = tree(repo, "restore")
    assert again.returncode == 2 and again.stderr.strip() == "error: nothing is hidden"


def test_hide_refuses_with_staged_changes_or_an_untracked_path(repo):
    (repo / "code.py").write_text("changed")
    git(repo, "add", "code.py")
    staged = tree(repo, "hide")
    assert staged.returncode == 2 and "staged changes" in staged.stderr
    git(repo, "reset", "-q")
    missing = tree(repo, "hide", "nowhere")
    assert missing.returncode == 2 and "nowhere: no tracked files there" in missing.stderr
    assert git(repo, "ls-files").split() == [".gitignore", "code.py", "reports/run/cell.parquet"]  # nothing hidden
    assert tree(repo, "restore").returncode == 2
