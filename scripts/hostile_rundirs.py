"""Measure each damaged or foreign run directory of tests/benchmark/test_hostile_rundirs.py through the real CLI:
`bench report` and then `bench run` (local executor) on a damaged copy of one real tiny run; plus a full disk
(a file-size limit on `bench run`) and an unwritable --out. Prints a Markdown table: case, command, exit status,
the first line of stderr that is not the plan's header or a cell's progress line, wall time.

    .venv/bin/python scripts/hostile_rundirs.py
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.benchmark.test_hostile_rundirs import DAMAGES, GRID, _limit_file_size  # noqa: E402

ROUTINE = re.compile(r"^(\S+: \d+ cells planned|\[\d+/\d+\] )")


def bench(args: list[str], cwd: Path, **kwargs) -> tuple[int, str, float]:
    """(exit status, first telling line of stderr, wall seconds) of `bench ARGS`."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sepbench.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, **kwargs)
    wall = time.perf_counter() - start
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not ROUTINE.match(line)]
    first = lines[0].strip() if lines else "(none)"
    if "Traceback" in proc.stderr:
        first = "TRACEBACK: " + proc.stderr.strip().splitlines()[-1]
    return proc.returncode, first.replace(str(cwd), "…").replace("|", "/"), wall


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        grid = root / "grid.yaml"
        grid.write_text(yaml.safe_dump(GRID, sort_keys=False))
        run = ["run", "--grid", str(grid), "--executor", "local", "--out"]
        code, first, wall = bench([*run, str(root / "clean")], root)
        print(f"clean tiny run (3 cells of `average`): exit {code} in {wall:.1f} s\n")
        print("| case | command | exit | first line of stderr | wall s |")
        print("|---|---|---|---|---|")
        for case, damage in DAMAGES.items():
            work = root / re.sub(r"\W+", "-", case)
            work.mkdir()
            target = work / "run"
            shutil.copytree(root / "clean", target)
            damage(target)
            for name, args in (("report", ["report", str(target)]), ("run", [*run, str(target)])):
                code, first, wall = bench(args, work)
                print(f"| {case} | {name} | {code} | `{first}` | {wall:.1f} |", flush=True)
        full = root / "full"
        code, first, wall = bench([*run, str(full)], root, preexec_fn=_limit_file_size)
        print(f"| full disk (4 KB file-size limit) | run | {code} | `{first}` | {wall:.1f} |", flush=True)
        code, first, wall = bench([*run, str(full)], root)
        print(f"| the same, limit lifted | run | {code} | `{first}` | {wall:.1f} |", flush=True)
        (root / "a-file").write_text("")
        for out in (root / "a-file" / "run", Path("/proc/sepbench-run")):
            code, first, wall = bench([*run, str(out)], root)
            print(f"| --out {str(out).replace(str(root), '…')} | run | {code} | `{first}` | {wall:.1f} |", flush=True)
        code, first, wall = bench(["report", str(root / "clean"), "--out", str(root / "a-file" / "x")], root)
        print(f"| --out …/a-file/x | report | {code} | `{first}` | {wall:.1f} |", flush=True)


if __name__ == "__main__":
    main()
