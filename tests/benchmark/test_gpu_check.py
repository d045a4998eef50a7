"""scripts/gpu-check.sh runs end to end on this machine without a GPU (its CPU part) and names what it skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from sepbench.perf.gpu_report import GPU_ITEMS
from sepbench.precision import cpu_has_bf16

REPO = Path(__file__).resolve().parents[2]


def test_the_cpu_part_runs_and_the_summary_names_every_skipped_item(tmp_path):
    out = tmp_path / "check"
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_METHODS": "fcsae",
           "GPU_CHECK_ARGS": "--profile cpu"}
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu-check.sh"), str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    summary = (out / "summary.md").read_text()
    assert results["errors"] == {}, results["errors"]
    # sepbench came from this checkout through the script's package of symlinks, not from an installation
    assert "/sepbench-pkg." in results["environment"]["sepbench"]
    skipped = summary[summary.index("## Skipped"):summary.index("## Errors")]
    if not torch.cuda.is_available():
        for item in GPU_ITEMS:
            assert f"- {item}: no CUDA device" in skipped
    tests = results["cuda_tests"]
    names = {t["test"].split("::")[-1].split("[")[0] for t in tests}
    assert {"test_cuda_matches_cpu", "test_bf16_separation_on_cuda_does_not_depend_on_batch_mates",
            "test_tiny_grid_cells_run_on_the_gpu"} <= names
    for test in tests:  # every CUDA test is named with what became of it
        assert test["outcome"] in ("passed", "skipped"), test
        if test["outcome"] == "skipped":
            assert f"- test {test['test']}: no CUDA device" in skipped
    # the same steps as on a GPU, at tiny sizes: numbers in the JSON, the CSV files and the summary
    assert [(r["method"], r["batch"]) for r in results["throughput"]] == [("fcsae", 2), ("fcsae", 4)]
    assert all(r["train_mixtures_per_s"] > 0 and r["separate_mixtures_per_s"] > 0 for r in results["throughput"])
    assert [r["cells"] for r in results["packing"]["rows"]] == [1, 2]
    fraction = results["roofline"]["rows"][0]["fraction_of_bf16_peak"]
    assert fraction > 0
    if torch.cuda.is_available() or cpu_has_bf16():  # bf16 in hardware: no fp32 training step beats its matmul peak
        assert fraction < 1
    assert set(results["projection"]["wall_seconds"]) == {"1", "2"}
    # the other ways to raise throughput: k seeds as one vmap-ed model (k = 1, 2) and a compiled loss, each measured
    alt = [(r["candidate"], r["seeds"]) for r in results["alternatives"]["rows"]]
    assert alt == [("seeds as one model", 1), ("seeds as one model", 2), ("torch.compile", 1)]
    for row in results["alternatives"]["rows"]:
        assert row["total_mixtures_per_s"] > 0 and row["vs_plain_step"] > 0, row
    assert "## Other ways to raise training throughput" in summary
    for name in ("throughput.csv", "packing.csv", "alternatives.csv", "roofline.csv", "projection.csv",
                 "cuda-tests.csv", "cuda-tests.xml", "log.txt"):
        assert (out / name).stat().st_size > 0, name
    for heading in ("## Environment", "## Mixtures/s", "## Cells sharing one device", "## Fraction of the measured",
                    "## Projected wall time"):
        assert heading in summary
