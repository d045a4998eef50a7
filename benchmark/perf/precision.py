"""Benchmark: bf16 autocast against fp32 — training speed of each learned method, and accuracy.

Speed: median seconds per training step (batch 64) under fp32 and bf16, rounds alternating so that load on
the machine hits both alike. Accuracy: the same small training (same seed, data, initialisation) once in
fp32 and once in bf16, then the test MSE and SSIM on the same fixed test mixtures; a bf16-trained network is
scored as sepbench runs it (``separate`` in bf16) and, for comparison, with fp32 inference. The check: test
MSE after bf16 training within 5 % of fp32's. ``--seeds 0 1`` also shows the seed-to-seed spread of fp32,
the yardstick for what "within 5 %" means at this budget.

    .venv/bin/python -m sepbench.perf.precision [--speed-methods fcsae,convsep,ligt] [--methods convsep,ligt]
        [--mixtures 3000] [--epochs 2] [--test 2000] [--threads 2] [--seeds 0]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from sepbench.api import FitContext, TrainBudget
from sepbench.datasets.mixtures import Batch, TrainingData, make_test_set
from sepbench.datasets.mnist import SourceImages, load_mnist
from sepbench.metrics import score
from sepbench.perf.common import LEARNED, SINGLE, build_method, load, median_seconds, run_steps, training_step
from sepbench.precision import bf16_supported, resolve_precision

STEPS = {"fcsae": 40, "convsep": 3, "ligt": 6}


def step_speed(name: str, images: torch.Tensor, rounds: int) -> dict[str, float]:
    """Median seconds per training step in fp32 and in bf16 (alternating rounds)."""
    method = build_method(name)
    batches = list(TrainingData(images, SINGLE, STEPS.get(name, 6) * 64, seed=0).epoch(64))
    steps = {p: training_step(method, p)[1] for p in ("fp32", "bf16")}
    for step in steps.values():
        run_steps(step, batches[:1])  # warm-up
    times: dict[str, list[float]] = {p: [] for p in steps}
    for _ in range(rounds):
        for precision, step in steps.items():
            times[precision].append(median_seconds(lambda s=step: run_steps(s, batches), 1, 0) / len(batches))
    return {p: sorted(t)[len(t) // 2] for p, t in times.items()}


def train_and_score(name: str, precision: str, sources: SourceImages, test: Batch, budget: TrainBudget,
                    seed: int) -> dict[str, float]:
    """Fit ``name`` with ``precision`` and score it on ``test``; bf16 networks also with bf16 inference."""
    method = build_method(name)
    data = TrainingData(sources.train, SINGLE, budget.mixtures, seed)
    started = time.perf_counter()
    method.fit(data, FitContext(seed=seed, budget=replace(budget, precision=precision)))
    out = {"fit_s": time.perf_counter() - started, "precision": method.precision_}
    trained = method.precision_
    for label, inference in (("", trained), ("fp32_inference_", "fp32")):
        if label and trained == "fp32":
            continue
        method.precision_ = inference  # separate() runs at this precision
        rows = score(method.separate(test.y).clamp(0, 1), test.x)
        out[label + "mse"], out[label + "ssim"] = float(rows["mse"].mean()), float(rows["ssim"].mean())
    method.precision_ = trained
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed-methods", default=",".join(LEARNED), help="'' to skip the speed part")
    parser.add_argument("--methods", default="convsep,ligt", help="accuracy part; '' to skip it")
    parser.add_argument("--mixtures", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--test", type=int, default=2000, help="fixed test mixtures")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sources = load_mnist()
    cpu = torch.device("cpu")
    print(f"CPU bf16 native: {bf16_supported(cpu)} → precision 'auto' resolves to {resolve_precision('auto', cpu)}; "
          f"{args.threads} thread(s)")

    if args.speed_methods:
        print(f"\ntraining step, batch 64, median of {args.rounds} alternating rounds; {load()}")
        for name in args.speed_methods.split(","):
            t = step_speed(name, sources.train, args.rounds)
            print(f"  {name:8} fp32 {1e3 * t['fp32']:8.1f} ms ({64 / t['fp32']:6.0f} mix/s)   "
                  f"bf16 {1e3 * t['bf16']:8.1f} ms ({64 / t['bf16']:6.0f} mix/s)   "
                  f"bf16 speed-up {t['fp32'] / t['bf16']:.2f}×", flush=True)
        print(f"  {load()}")

    if args.methods:
        budget = TrainBudget(mixtures=args.mixtures, epochs=args.epochs, batch_size=64, lr=1e-3)
        test = make_test_set(sources.test, SINGLE, args.test, "mnist:60000:10000")
        print(f"\naccuracy: {args.mixtures} mixtures × {args.epochs} epochs, σ=0.01, {args.test} test mixtures; "
              f"{load()}")
        for name in args.methods.split(","):
            for seed in args.seeds:
                fp32 = train_and_score(name, "fp32", sources, test, budget, seed)
                bf16 = train_and_score(name, "bf16", sources, test, budget, seed)
                ratio = bf16["mse"] / fp32["mse"]
                print(f"  {name:8} seed {seed}: fp32 MSE {fp32['mse']:.5f} SSIM {fp32['ssim']:.4f} "
                      f"({fp32['fit_s']:.0f}s) | bf16 MSE {bf16['mse']:.5f} SSIM {bf16['ssim']:.4f} "
                      f"({bf16['fit_s']:.0f}s; with fp32 inference MSE {bf16['fp32_inference_mse']:.5f}) | "
                      f"bf16/fp32 MSE {ratio:.3f} {'within' if abs(ratio - 1) <= 0.05 else 'NOT within'} 5 %; "
                      f"fit {fp32['fit_s'] / bf16['fit_s']:.2f}× faster; {load()}", flush=True)


if __name__ == "__main__":
    main()
