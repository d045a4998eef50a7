"""A quick command line: `bench --help` and `bench methods` load only what they need (docs/performance.md).

Each case runs the real CLI in a fresh interpreter and lists the heavy libraries it imported. Timing is the
benchmark's business (docs/performance.md, "Start-up of the command line"); this is behaviour.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("ray", "pandas", "seaborn", "matplotlib", "sklearn", "scipy", "pyarrow", "skimage")

PROBE = """
import sys
from sepbench.cli import bench
try:
    bench.main(sys.argv[1:], prog_name="bench")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("LOADED", " ".join(sorted({m.split(".")[0] for m in sys.modules})), file=sys.stderr)
sys.exit(code)
"""


def loaded_by(*args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300)
    line = next(ln for ln in result.stderr.splitlines() if ln.startswith("LOADED "))
    return result, set(line.split()[1:])


def test_help_loads_neither_torch_nor_any_heavy_library():
    result, loaded = loaded_by("--help")
    assert result.returncode == 0 and "methods" in result.stdout
    assert "click" in loaded and "sepbench" in loaded  # the probe sees what the CLI imported
    assert loaded.isdisjoint({*HEAVY, "torch"}), sorted(loaded & {*HEAVY, "torch"})


@pytest.mark.parametrize("args", [("methods",), ("methods", "ica")])
def test_listing_methods_loads_no_heavy_library(args):
    result, loaded = loaded_by(*args)
    assert result.returncode == 0, result.stderr
    assert "ica" in result.stdout  # the listing is real: ICA is there, though scikit-learn is not loaded
    assert "torch" in loaded  # the methods are torch classes
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
