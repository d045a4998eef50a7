"""Where a cell runs: the GPU its executor gave it (``cuda:<local index>``), or the CPU — and its record says which."""

from __future__ import annotations

import json

import pytest
import torch

from sepbench.devices import local_cuda_index, place
from sepbench.precision import cpu_has_bf16
from tests.conftest import bench_here


@pytest.mark.parametrize("gpu_id, visible, index", [
    ("1", "1", 0),            # Ray's usual way: CUDA_VISIBLE_DEVICES holds just the task's GPU
    ("3", "2,3", 1),          # a cell with two GPUs, or a node whose GPUs are listed
    ("1", "", 1),             # nothing listed: the id is torch's index
    ("2", None, 2),
])
def test_a_gpu_id_maps_to_torchs_index(gpu_id, visible, index):
    assert local_cuda_index(gpu_id, visible) == index


def test_a_given_gpu_becomes_that_cuda_device():
    placed = place(0.5, [1], cuda_count=1, visible="1")
    assert placed.device == torch.device("cuda", 0) and placed.gpu_ids == ("1",) and placed.note is None
    assert place(1, [3, 2], cuda_count=2, visible="2,3").device == torch.device("cuda", 1)
    assert place(0.5, None, cuda_count=2, visible="").device == torch.device("cuda", 0)  # local executor


def test_a_given_gpu_without_cuda_runs_on_the_cpu_and_says_so():
    placed = place(0.25, [1], cuda_count=0, visible="1")
    assert placed.device == torch.device("cpu")
    record = placed.record()
    assert record["device"] == "cpu" and record["device_name"].startswith("CPU") and record["gpu_ids"] == ["1"]
    assert record["device_note"].startswith("given GPU 1 but torch") and "ran on the CPU" in record["device_note"]
    # a GPU id torch does not see is the CPU too, not a crash
    assert "ran on the CPU" in place(0.5, [5], cuda_count=2, visible="").note


def test_cpu_cells_name_the_cpu():
    record = place(0, None, cuda_count=1, visible="").record()
    assert record["device"] == "cpu" and "gpu_ids" not in record and "device_note" not in record
    assert record["cpu_capability"] in ("DEFAULT", "AVX2", "AVX512", "ZVECTOR", "VSX", "SVE256") \
        and record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["cpu_bf16"] is cpu_has_bf16()
    assert "ran on the CPU" in place(0.5, None, cuda_count=0, visible="").note


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU fallback: without CUDA")
def test_a_local_run_records_the_device_of_every_cell(tmp_path, write_grid):
    grid = write_grid({"noise": [0.1], "scenarios": {"single": {"weights": [[1, 1]]}},
                       "methods": ["average", {"method": "fcsae", "params": {"hidden": 64}}]})
    result = bench_here("run", "--grid", str(grid), "--out", str(tmp_path / "run"), "--executor", "local",
                   cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metas = {m["config"]["method"]: m for m in (json.loads(p.read_text())
                                                for p in (tmp_path / "run" / "cells").glob("*.json"))}
    assert {m["device"] for m in metas.values()} == {"cpu"}
    assert all(m["device_name"].startswith("CPU") for m in metas.values())
    # the instruction set torch's kernels ran on, which the CPU's model name does not tell (AVX2 or AVX512 EPYCs)
    assert {m["cpu_capability"] for m in metas.values()} == {str(torch.backends.cpu.get_cpu_capability())}
    assert {m["cpu_bf16"] for m in metas.values()} == {cpu_has_bf16()}
    assert "device_note" not in metas["average"]  # asks for no GPU
    assert metas["fcsae"]["device_note"] == "asked for 0.0625 GPU; no CUDA device here: ran on the CPU"


def test_the_reports_cost_table_names_a_gpu_by_its_model():
    from sepbench.report.summary import _device

    assert _device({"device": "cuda:0", "device_name": "NVIDIA H200"}) == "NVIDIA H200"
    assert _device({"device": "cpu", "device_name": "CPU: AMD EPYC", "gpu_ids": ["1"]}) == "cpu"
    assert _device({}) == "?"
