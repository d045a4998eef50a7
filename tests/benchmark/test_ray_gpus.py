"""GPU scheduling on a real Ray with two logical GPUs (``ray start --num-gpus 2``) on this machine without CUDA.

A probe method records, from inside each cell, when it ran, the GPU ids Ray gave it (``ray.get_gpu_ids()``,
``CUDA_VISIBLE_DEVICES``) and the device the cell handed it. Cells wait in ``fit`` until a given number of cells
have started (or two minutes have passed), so that everything Ray lets run at once does run at once: the records
then show how many cells shared each GPU. Without CUDA each cell runs on the CPU and its record says so.
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.benchmark.test_ray_executor import assert_nothing_left, marker, popen_bench
from tests.raycluster import RayNode, auth_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

PROBE = '''
"""A method that records where and when it ran (from inside a Ray task) and waits for its peers."""
import json
import os
import time
from pathlib import Path

import ray

from sepbench import Method, Param, Resources, register_method, upsample


@register_method("gpu-probe")
class GpuProbe(Method):
    resources = Resources(cpu=1, gpu=1)  # the grid and the command line change this
    parameters = {"log": Param("", str), "expect": Param(1, int)}

    def fit(self, data, ctx):
        log = Path(self.params["log"])
        name = f"{os.getpid()}-{time.time_ns()}"
        started = time.time()
        (log / f"{name}.start").write_text("")
        while len(list(log.glob("*.start"))) < self.params["expect"] and time.time() < started + 120:
            time.sleep(0.05)  # until every cell Ray may run at once has started
        time.sleep(1.0)
        record = {"sigma": self.task.sigma, "start": started, "end": time.time(), "pid": os.getpid(),
                  "gpu_ids": [str(i) for i in ray.get_gpu_ids()], "device": str(ctx.device),
                  "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES")}
        (log / f"{name}.json").write_text(json.dumps(record))
        return super().fit(data, ctx)

    def separate(self, y):
        half = upsample(y.sum(dim=1, keepdim=True), self.task.downsample) / float(self.task.weight_matrix().sum())
        return half.expand(-1, self.task.n_sources, -1, -1).contiguous()
'''


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) intervals that overlap at one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    now = best = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


def test_most_at_once():
    assert most_at_once([(0, 2), (1, 3), (2.5, 4)]) == 2
    assert most_at_once([(0, 1), (1, 2)]) == 1  # one ends as the next starts
    assert most_at_once([]) == 0


def test_two_logical_gpus_half_a_gpu_per_cell(tmp_path, write_grid):
    plugin, log = tmp_path / "plugin", tmp_path / "probe"
    plugin.mkdir()
    log.mkdir()
    (plugin / "gpu_probe.py").write_text(PROBE)
    sigmas = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]
    # the method declares 1 GPU, the grid entry 0.25, the command line 0.5: the command line wins
    entry = {"method": "gpu-probe", "params": {"log": str(log), "expect": 4}, "resources": {"gpu": 0.25}}
    grid = write_grid({"scenarios": {"single": {"weights": [[1, 1]]}}, "noise": sigmas, "methods": [entry],
                       "plugins": ["gpu_probe"]})
    env = auth_env()
    head = RayNode(env, num_cpus=6, num_gpus=2, tag="g")  # 6 CPUs: only the GPUs limit how many cells run
    proc = None
    try:
        head.wait_started()
        run_env = {**env, **marker(), "PYTHONPATH": str(plugin)}
        proc = popen_bench("run", "--grid", str(grid), "--out", str(tmp_path / "run"), "--address", head.address,
                           "--gpu-share", "0.5", cwd=tmp_path, env=run_env, log=tmp_path / "bench.log")
        status = proc.wait(420)
        out = (tmp_path / "bench.log").read_text()
        assert status == 0, out
        assert "Ray: 1 node(s), 6 CPUs, 2 GPUs" in out and "[6/6]" in out
        probes = [json.loads(p.read_text()) for p in log.glob("*.json")]
        metas = {m["config"]["sigma"]: m for m in (json.loads(p.read_text())
                                                  for p in (tmp_path / "run" / "cells").glob("*.json"))}
        assert len(probes) == len(metas) == 6 and {m["status"] for m in metas.values()} == {"done"}, out

        # each task receives one GPU id of its own; Ray sets CUDA_VISIBLE_DEVICES to it; both GPUs are used
        assert all(len(p["gpu_ids"]) == 1 and p["cuda_visible"] == p["gpu_ids"][0] for p in probes), probes
        assert {p["gpu_ids"][0] for p in probes} == {"0", "1"}, probes
        # packed two per GPU and no more (four cells ran at once, while six CPUs would have allowed six)
        per_gpu = {gpu: most_at_once([(p["start"], p["end"]) for p in probes if p["gpu_ids"] == [gpu]])
                   for gpu in ("0", "1")}
        assert per_gpu == {"0": 2, "1": 2}, (per_gpu, probes)
        assert most_at_once([(p["start"], p["end"]) for p in probes]) == 4, probes

        # no CUDA here: the method was given the CPU, and each cell's record says where it ran and why
        for probe in probes:
            meta = metas[probe["sigma"]]
            assert probe["device"] == meta["device"] == "cpu"
            assert meta["gpu_ids"] == probe["gpu_ids"] and meta["resources"] == {"cpu": 1.0, "gpu": 0.5}
            assert meta["device_name"].startswith("CPU")
            assert meta["device_note"].startswith(f"given GPU {probe['gpu_ids'][0]} but torch")
            assert meta["device_note"].endswith("sees no CUDA device here: ran on the CPU")
        assert "on GPU 0: given GPU 0 but torch" in out and "on GPU 1: given GPU 1 but torch" in out
        assert_nothing_left(run_env)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        head.stop()
