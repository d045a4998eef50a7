"""The GPU check: what the project needs to know from a GPU, measured in one command (``scripts/gpu-check.sh OUT``).

Steps: the environment; the tests that skip without CUDA (``pytest -m cuda``), run on CUDA; training and
separation mixtures/s of each learned method of the default grid at batch 64, 256 and 1,024; total training
mixtures/s of 1, 2, 4, 8, 16 cells sharing the GPU, until it stops rising; what else raises it (k seeds trained
as one batched model, torch.compile with CUDA graphs: perf/alternatives.py); each method's fraction of the GPU's
measured bf16 matmul peak; the projected wall time of ``bench run --grid default`` on 1 and 2 such GPUs. Each step's
numbers are written as soon as it ends (results.json, CSV files, summary.md), so a cut-short run keeps them.

Without CUDA it runs the same steps at tiny sizes on the CPU (the ``cpu`` profile: a smoke test of this code,
not a measurement) and the summary names every GPU item it skipped.

    python -m sepbench.perf.gpu_check OUT [--profile gpu|cpu] [--methods fcsae,convsep,ligt] [--budget 500]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from sepbench.perf.alternatives import alternatives_for
from sepbench.perf.gpu_report import GPU_ITEMS, projection, write_outputs

REPO = Path(__file__).resolve().parents[2] if (Path(__file__).resolve().parents[2] / "tests").is_dir() else Path.cwd()


@dataclass(frozen=True)
class Profile:
    """Sizes of one run of the check."""

    device: str
    batches: tuple[int, ...]
    seconds: float  # timed window of each throughput measurement
    cells: tuple[int, ...]  # packing: numbers of cells sharing the device
    pack_seconds: float
    pack_methods: tuple[str, ...] | None  # None: every measured method
    peak_n: int  # matmul size for the peak
    flop_batch: int  # batch whose FLOPs are counted (per mixture they do not depend on it)
    budget: float  # seconds for the whole check; packing stops early to keep it
    alt_seeds: tuple[int, ...]  # seeds trained as one model (alternatives.py); 15 = the default grid's 3 × 5 σ
    alt_compile: tuple[str, str | None]  # torch.compile backend and mode
    alt_reserve: float  # seconds of the budget kept from packing for the alternatives
    alt_cost: float  # about what one method's alternatives take


PROFILES = {
    "gpu": Profile("cuda", (64, 256, 1024), 3.0, (1, 2, 4, 8, 16), 4.0, None, 8192, 64, 500.0,
                   (1, 3, 15), ("inductor", "reduce-overhead"), 120.0, 60.0),
    "cpu": Profile("cpu", (2, 4), 0.1, (1, 2), 0.3, ("fcsae",), 256, 4, 170.0, (1, 2), ("aot_eager", None), 20.0, 5.0),
}


class Check:
    """Runs the steps, keeps their results and errors, and rewrites the outputs after each one."""

    def __init__(self, out: Path, profile_name: str, methods: list[str]) -> None:
        self.out, self.profile_name, self.profile = out, profile_name, PROFILES[profile_name]
        self.methods = methods
        self.started = time.monotonic()
        self.results: dict[str, Any] = {"profile": profile_name, "profile_sizes": asdict(self.profile),
                                        "methods": methods, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                        "steps": {}, "skipped": [], "errors": {}}

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def step(self, name: str, fn: Callable[[], Any]) -> Any:
        print(f"[{self.elapsed():5.0f} s] {name} …", flush=True)
        t0 = time.monotonic()
        try:
            value = fn()
        except (Exception, SystemExit) as exc:  # one failing step must not cost the others
            value = None
            self.results["errors"][name] = f"{type(exc).__name__}: {exc}"
            print(f"  {name} failed: {type(exc).__name__}: {exc}", flush=True)
        self.results["steps"][name] = {"seconds": round(time.monotonic() - t0, 1)}
        if value is not None:
            self.results[name] = value
        self.save()
        return value

    def skip(self, item: str, reason: str) -> None:
        self.results["skipped"].append({"item": item, "reason": reason})

    def save(self) -> None:
        self.results["seconds"] = round(self.elapsed(), 1)
        write_outputs(self.out, self.results)


def environment() -> dict[str, Any]:
    """GPU, driver, torch, CUDA, CPU: what the numbers were measured on."""
    import sepbench
    from sepbench.devices import cpu_model

    env: dict[str, Any] = {"sepbench": os.path.dirname(sepbench.__file__), "python": platform.python_version(),
                           "torch": torch.__version__,
                           "cuda_runtime": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                           "cuda_available": torch.cuda.is_available(), "cpu": cpu_model(),
                           "cpu_count": os.cpu_count(), "host": platform.node()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_count=torch.cuda.device_count(),
                   gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   compute_capability=f"{props.major}.{props.minor}", bf16=torch.cuda.is_bf16_supported())
    if shutil.which("nvidia-smi"):
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,power.limit",
                                "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        env["nvidia_smi"] = query.stdout.strip() or query.stderr.strip()
    return env


def cuda_tests(out: Path, timeout: float) -> list[dict[str, str]]:
    """Every test marked ``cuda`` (they skip without CUDA), run with pytest; one row per test with its outcome."""
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py")
                   if "pytest.mark.cuda" in p.read_text())
    if not files:
        raise RuntimeError(f"no test marked cuda under {REPO / 'tests'}")
    xml = out / "cuda-tests.xml"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
                           f"--junitxml={xml}", *files], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    (out / "cuda-tests.log").write_text(done.stdout + done.stderr)
    if not xml.exists():
        raise RuntimeError(f"pytest wrote no report (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    rows = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            node = case.find(kind)
            if node is not None:
                outcome, message = {"failure": "failed", "error": "error", "skipped": "skipped"}[kind], \
                    (node.get("message") or "").splitlines()[0][:200] if node.get("message") else ""
                break
        rows.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                     "seconds": case.get("time", ""), "message": message})
    return rows


def throughput(methods: list[str], profile: Profile) -> list[dict[str, Any]]:
    """Training and separation mixtures/s of each method at each batch size (device_throughput's part 1)."""
    from sepbench.datasets.mnist import load_mnist
    from sepbench.perf.device_throughput import separation_rate, training_rate

    device = torch.device(profile.device)
    images = load_mnist().train.to(device)
    rows = []
    for name in methods:
        for batch in profile.batches:
            rows.append({"method": name, "batch": batch,
                         "train_mixtures_per_s": training_rate(name, images, batch, device, profile.seconds),
                         "separate_mixtures_per_s": separation_rate(name, images, batch, device, profile.seconds)})
            print(f"  {name} batch {batch}: {rows[-1]['train_mixtures_per_s']:,.0f} train · "
                  f"{rows[-1]['separate_mixtures_per_s']:,.0f} separate mixtures/s", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def packing(check: Check, methods: list[str]) -> dict[str, Any]:
    """Total training mixtures/s of k cells (processes) sharing the device, per method, until it stops rising."""
    from sepbench.perf.device_throughput import packing as pack

    profile, rows, best = check.profile, [], {}
    for name in methods:  # in the default grid's order, each while a method's minute is left (the first ones
        # used to be skipped when the budget could not cover all: on 2026-12-04 the share of the paper's networks)
        left = profile.budget - profile.alt_reserve - check.elapsed()
        if left < 60 * (1 if profile.device == "cuda" else 0.3):
            check.skip(f"cells per GPU: {name}", f"time budget ({profile.budget:g} s) nearly spent")
            continue
        found, k = pack(name, list(profile.cells), torch.device(profile.device), profile.pack_seconds, 120.0,
                        echo=lambda text: print(text, flush=True))
        rows += found
        best[name] = {"cells": k if k is not None else profile.cells[-1], "still_rising": k is None}
    return {"rows": rows, "best": best}


def roofline(methods: list[str], profile: Profile, rates: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The device's measured bf16 matmul peak, each method's FLOPs per training mixture, and the fraction reached."""
    from sepbench.datasets.mixtures import TrainingData
    from sepbench.datasets.mnist import load_mnist
    from sepbench.perf.common import SINGLE
    from sepbench.perf.roofline import flops_per_mixture

    device = torch.device(profile.device)
    n = profile.peak_n
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    best = 0.0
    for _ in range(12):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(5):
            torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 5 * 2 * n**3 / (time.perf_counter() - t0))
    del a, b
    batch = next(TrainingData(load_mnist().train, SINGLE, profile.flop_batch, seed=0).epoch(profile.flop_batch))
    flops = {name: flops_per_mixture(name, batch) for name in methods}
    rows = []
    for rate in rates or []:
        train_flops = flops[rate["method"]][0]
        achieved = train_flops * rate["train_mixtures_per_s"]
        rows.append({"method": rate["method"], "batch": rate["batch"], "train_mflop_per_mixture": train_flops / 1e6,
                     "achieved_tflops": achieved / 1e12, "fraction_of_bf16_peak": achieved / best})
    return {"peak_bf16_tflops": best / 1e12, "matmul_n": n, "rows": rows,
            "flops": {k: {"train": v[0], "separate": v[1]} for k, v in flops.items()}}


def score_seconds_per_mixture(n: int = 500) -> float:
    """CPU seconds to score one test mixture on one thread, as a Ray cell (one CPU) scores."""
    from sepbench.metrics import score

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)
        est, ref = torch.rand(n, 2, 28, 28, generator=gen), torch.rand(n, 2, 28, 28, generator=gen)
        t0 = time.perf_counter()
        score(est, ref)
        return (time.perf_counter() - t0) / n
    finally:
        torch.set_num_threads(threads)


def default_methods() -> list[str]:
    """The learned methods of the default grid (a variant such as fcsae-pit costs what its method costs)."""
    from sepbench.grid import load_grid
    from sepbench.plan import plan_grid

    return list(dict.fromkeys(c.method for c in plan_grid(load_grid("default")).cells if c.budget is not None))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="gpu" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", default=os.environ.get("GPU_CHECK_METHODS", ""),
                        help="learned methods to measure (default: those of the default grid)")
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole check")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    from sepbench.datasets.mnist import DatasetNotFound, load_mnist

    try:
        load_mnist(download=False)
    except (DatasetNotFound, ValueError) as exc:
        print(f"error: {exc} (on this side: python -m sepbench.datasets.idx_export DIR, then BENCH_DATA=DIR)",
              file=sys.stderr)
        return 2
    methods = [m for m in re.split(r"[,\s]+", args.methods) if m] or default_methods()
    check = Check(args.out, args.profile, methods)
    if args.budget:
        check.profile = replace(check.profile, budget=args.budget)
    profile = check.profile
    gpu = profile.device == "cuda"
    if not gpu:
        torch.set_num_threads(1)  # a smoke run: one thread, as a Ray cell has, and no fight over a busy CPU
        reason = "no CUDA device" if not torch.cuda.is_available() else "profile cpu chosen"
        for item in GPU_ITEMS:
            check.skip(item, reason)
    check.step("environment", environment)
    check.step("cuda_tests", lambda: cuda_tests(args.out, 300))
    rates = check.step("throughput", lambda: throughput(methods, profile))
    pack_methods = [m for m in methods if profile.pack_methods is None or m in profile.pack_methods]
    check.step("packing", lambda: packing(check, pack_methods))
    check.step("alternatives", lambda: alternatives_for(check, methods, rates))
    check.step("roofline", lambda: roofline(methods, profile, rates))
    check.step("score_seconds_per_mixture", score_seconds_per_mixture)
    check.step("projection", lambda: projection(check.results))
    check.save()
    print(f"[{check.elapsed():5.0f} s] wrote {args.out / 'summary.md'}", flush=True)
    return 1 if check.results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
