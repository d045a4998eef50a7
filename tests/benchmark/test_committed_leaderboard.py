"""The committed leaderboard tables are what `bench leaderboard` makes of the committed cells today (issue 24:
"`bench leaderboard reports/leaderboard/*` regenerates the committed tables")."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from sepbench.leaderboard import write_leaderboard

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "reports" / "leaderboard"


def _runs_named_in(markdown: str) -> list[str]:
    """The run directories the committed page says it was built from (its "From `a`, `b` (`bench leaderboard`)")."""
    line = next(line for line in markdown.splitlines() if line.startswith("From "))
    return re.findall(r"`([^`]+)`", line.split("(`bench leaderboard`)")[0])


def test_the_committed_tables_regenerate_from_the_committed_cells(tmp_path, monkeypatch):
    committed_md = (COMMITTED / "leaderboard.md").read_text()
    runs = _runs_named_in(committed_md)
    assert runs and all((ROOT / run / "manifest.json").is_file() for run in runs), runs
    monkeypatch.chdir(ROOT)  # the page names the runs as they were given, relative to the repository root
    write_leaderboard(runs, tmp_path)
    assert (tmp_path / "leaderboard.md").read_text() == committed_md
    committed_tests = sorted(p.name for p in COMMITTED.glob("tests-*.csv"))
    assert sorted(p.name for p in tmp_path.glob("tests-*.csv")) == committed_tests
    # Numbers, not bytes, for the CSVs: a sum may differ in its last bit on another CPU's SIMD path.
    for name in ["leaderboard.csv", *committed_tests]:
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / name), pd.read_csv(COMMITTED / name),
                                      check_exact=False, rtol=1e-9, atol=0)
