"""Benchmark: sepbench end to end against the pipeline a researcher writes by hand, same model, same budget.

Both sides train the same network (the method's own, same initialisation seed, same loss, Adam lr 1e-3,
batch 64) on the same number of freshly mixed MNIST pairs per epoch, validate each epoch on a fixed set of
the same size and keep the best weights, then separate the same number of fixed test mixtures and score
them (best permutation per mixture by MSE, then MSE and SSIM).

* sepbench: a grid dict → ``plan_grid`` → ``run_cell`` (what ``bench run`` does per cell): mixtures generated
  in batches where the model runs, ``precision: auto`` (bf16 autocast where the CPU has bf16 instructions),
  the fused Adam, the batched SSIM; ``run_cell`` also makes examples and checks digit recognisability.
* by hand: a ``torch.utils.data.Dataset`` whose ``__getitem__`` mixes one pair (picks two digits, adds,
  pools, adds noise) behind a ``DataLoader`` (batch 64, shuffled, no worker processes), fp32, ``torch.optim.Adam``
  with its defaults, and scikit-image's ``structural_similarity`` in a Python loop.

MNIST is loaded once beforehand for both, and each side runs once on a tiny budget before the timed runs (not
timed: first calls create oneDNN kernels). Both run in this process with the same torch threads; ``--repeats``
alternates which side goes first. Prints wall times, their ratio, and both sides' scores.

    .venv/bin/python -m sepbench.perf.vs_handwritten [--methods ligt] [--mixtures 3000] [--epochs 2]
        [--test 10000] [--threads N] [--repeats 1]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity
from torch.utils.data import DataLoader, Dataset

from sepbench.cell import load_sources, run_cell
from sepbench.datasets.mixtures import Batch
from sepbench.grid import parse_grid
from sepbench.perf.common import build_method, load
from sepbench.plan import plan_grid

SIGMA = 0.01


class MixtureDataset(Dataset):
    """One mixture per item: two digits, added, 2×2 average-pooled, plus Gaussian noise.

    Training sets draw a fresh partner and fresh noise on every access; a fixed set (validation, test)
    draws its pairs once and seeds each item's noise by its index.
    """

    def __init__(self, images: torch.Tensor, n: int, seed: int, fixed: bool) -> None:
        self.images, self.n, self.seed, self.fixed = images, n, seed, fixed
        self.rng = np.random.default_rng(seed)
        self.pairs = self._draw_pairs() if fixed else None

    def _draw_pairs(self) -> np.ndarray:
        first = self.rng.permutation(len(self.images))[:self.n] if self.n <= len(self.images) else \
            self.rng.integers(0, len(self.images), self.n)
        return np.stack([first, (first + self.rng.integers(1, len(self.images), self.n)) % len(self.images)], 1)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.fixed:
            a, b = self.pairs[i]
            noise = torch.randn(1, 14, 14, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + i))
        else:
            a = i % len(self.images)
            b = (a + int(self.rng.integers(1, len(self.images)))) % len(self.images)
            noise = torch.randn(1, 14, 14)
        x = torch.stack([self.images[a], self.images[b]])  # (2, 28, 28) sources
        z = x.sum(0, keepdim=True)  # (1, 28, 28) superposition
        y = F.avg_pool2d(z, 2) + SIGMA * noise  # (1, 14, 14) observation
        return y, x, z


def handwritten(name: str, images: torch.Tensor, test_images: torch.Tensor, mixtures: int, epochs: int,
                n_test: int, seed: int = 0) -> dict[str, float]:
    """The hand-written pipeline; returns its wall seconds per phase and its mean test MSE and SSIM."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    method = build_method(name)  # for its network and its loss only
    net = method.build_network()
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    train_loader = DataLoader(MixtureDataset(images, mixtures, seed, fixed=False), batch_size=64, shuffle=True)
    n_val = min(1000, max(64, mixtures // 10))
    val_loader = DataLoader(MixtureDataset(images, n_val, seed + 1, fixed=True), batch_size=64)
    best, best_state = math.inf, None
    for _ in range(epochs):
        net.train()
        for y, x, z in train_loader:
            optimiser.zero_grad()
            loss = method.training_loss(net, Batch(y, x, z))
            loss.backward()
            optimiser.step()
        net.eval()
        with torch.no_grad():
            val = sum(float(method.training_loss(net, Batch(y, x, z))) * len(y) for y, x, z in val_loader) / n_val
        if val < best:
            best, best_state = val, {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    trained = time.perf_counter()

    net.eval()
    outputs, sources = [], []
    with torch.no_grad():
        for y, x, _z in DataLoader(MixtureDataset(test_images, n_test, 12345, fixed=True), batch_size=64):
            outputs.append(method.predict(net, y).clamp(0, 1))
            sources.append(x)
    est, ref = torch.cat(outputs).double().numpy(), torch.cat(sources).double().numpy()
    mses, ssims = [], []
    for e, r in zip(est, ref, strict=True):
        keep = ((e - r) ** 2).mean() <= ((e[::-1] - r) ** 2).mean()  # sum of the two sources' MSEs
        e = e if keep else e[::-1]
        for k in range(2):
            mses.append(((e[k] - r[k]) ** 2).mean())
            ssims.append(structural_similarity(e[k], r[k], data_range=1.0))
    done = time.perf_counter()
    return {"seconds": done - started, "train_s": trained - started, "eval_s": done - trained,
            "mse": float(np.mean(mses)), "ssim": float(np.mean(ssims))}


def sepbench(name: str, mixtures: int, epochs: int, n_test: int, precision: str, seed: int = 0) -> dict:
    """The same work through sepbench: one cell of a grid, run by ``run_cell``."""
    grid = parse_grid({
        "name": "vs-handwritten", "dataset": {"name": "mnist", "train_size": 60000, "test_size": 10000},
        "scenarios": {"single": {"weights": [[1, 1]], "downsample": 2}}, "noise": [SIGMA], "seeds": [seed],
        "train": {"mixtures": mixtures, "epochs": epochs, "batch_size": 64, "lr": 1e-3, "precision": precision},
        "test": {"mixtures": n_test}, "methods": [name],
    })
    (cell,) = plan_grid(grid).cells
    started = time.perf_counter()
    result = run_cell(cell, device=torch.device("cpu"))
    seconds = time.perf_counter() - started
    if result.status != "done":
        raise SystemExit(f"sepbench cell failed: {result.meta.get('error')}")
    meta = result.meta
    return {"seconds": seconds, "train_s": meta["fit_seconds"], "eval_s": seconds - meta["fit_seconds"],
            "mse": meta["mse"], "ssim": meta["ssim"], "precision": meta["precision"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="ligt", help="comma-separated: fcsae, convsep, ligt")
    parser.add_argument("--mixtures", type=int, default=3000, help="training mixtures per epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--test", type=int, default=10000,
                        help="test mixtures (default: the whole MNIST test set, as a sepbench grid scores)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--precision", default="auto", help="sepbench's train precision: auto | fp32 | bf16")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sources = load_sources()  # loaded once for both sides (cached for run_cell)
    print(f"{args.mixtures} mixtures × {args.epochs} epochs, {args.test} test mixtures, σ={SIGMA}, batch 64, "
          f"{torch.get_num_threads()} torch thread(s); {load()}")
    for name in args.methods.split(","):
        # untimed warm-up of both sides: first calls create oneDNN kernels and load the digit classifier
        sepbench(name, 128, 1, 64, args.precision)
        handwritten(name, sources.train[:, 0], sources.test[:, 0], 128, 1, 64)  # (N, 28, 28): one channel
        runs: dict[str, list[dict]] = {"sepbench": [], "by hand": []}
        for repeat in range(args.repeats):
            order = ("sepbench", "by hand") if repeat % 2 == 0 else ("by hand", "sepbench")
            for side in order:
                if side == "sepbench":
                    r = sepbench(name, args.mixtures, args.epochs, args.test, args.precision)
                else:
                    r = handwritten(name, sources.train[:, 0], sources.test[:, 0], args.mixtures, args.epochs,
                                    args.test)
                runs[side].append(r)
                print(f"  {name:8} {side:9} {r['seconds']:7.1f}s (train {r['train_s']:6.1f}s, evaluate "
                      f"{r['eval_s']:5.1f}s) MSE {r['mse']:.5f} SSIM {r['ssim']:.4f}"
                      f"{' precision ' + r['precision'] if 'precision' in r else ''}; {load()}", flush=True)
        fast = statistics.median(r["seconds"] for r in runs["sepbench"])
        slow = statistics.median(r["seconds"] for r in runs["by hand"])
        train = statistics.median(r["train_s"] for r in runs["by hand"]) / statistics.median(
            r["train_s"] for r in runs["sepbench"])
        evaluate = statistics.median(r["eval_s"] for r in runs["by hand"]) / statistics.median(
            r["eval_s"] for r in runs["sepbench"])
        print(f"{name}: sepbench {fast:.1f}s, by hand {slow:.1f}s → sepbench {slow / fast:.2f}× faster end to end "
              f"(training {train:.2f}×, evaluation {evaluate:.2f}×)", flush=True)


if __name__ == "__main__":
    main()
