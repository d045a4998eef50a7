"""A tiny grid's cells on the GPU (local executor): learned cells run on cuda:0 and their records name the GPU.

Skipped without CUDA; ``scripts/gpu-check.sh`` runs it on a GPU (``pytest -m cuda``).
"""

from __future__ import annotations

import json

import pytest
import torch

from sepbench.devices import place
from tests.conftest import bench

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


def test_a_gpu_id_given_by_an_executor_is_that_cuda_device():
    placed = place(0.5, ["0"], visible="0")
    assert placed.device == torch.device("cuda", 0) and placed.note is None
    assert placed.record()["device_name"] == torch.cuda.get_device_name(0)


def test_tiny_grid_cells_run_on_the_gpu(tmp_path, write_grid):
    grid = write_grid({"noise": [0.1], "train": {"mixtures": 128, "epochs": 1, "batch_size": 64, "precision": "auto"},
                       "methods": ["average", "ica", {"method": "fcsae", "params": {"hidden": 64}},
                                                   "convsep", "ligt"]})
    result = bench("run", "--grid", str(grid), "--out", str(tmp_path / "run"), "--executor", "local", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metas = [json.loads(p.read_text()) for p in (tmp_path / "run" / "cells").glob("*.json")]
    assert {m["status"] for m in metas} == {"done"}
    learned = [m for m in metas if m["config"]["budget"] is not None]
    assert len(learned) == 6  # fcsae, convsep, ligt on two scenarios
    for meta in learned:
        assert meta["device"] == "cuda:0" and "device_note" not in meta, meta
        assert meta["device_name"] == torch.cuda.get_device_name(0)
        assert meta["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
        # a placement test: 128 mixtures train nothing useful (ligt gave 0.212 on an H200), but the scores must be
        # real ones — finite, and within [0, 1] since estimates are clamped to the images' range
        assert 0 <= meta["mse"] <= 1 and 0 <= meta["history"][-1]["val_loss"] < 1e3
    assert all(m["device"] == "cpu" for m in metas if m["config"]["budget"] is None)
