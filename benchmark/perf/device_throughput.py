"""Benchmark: throughput on one device at batch 64, 256 and 1,024, and how many cells can share the device.

Part 1, per learned method: training mixtures/s (steps as ``fit`` runs them: batches generated on the device,
``precision: auto``, the fused Adam) and separation mixtures/s (eval mode, no gradients, the same autocast),
for each batch size. Part 2: k = 1, 2, 3, … (or ``--cells 1,2,4,8``) training processes ("cells", batch 64) on
the same device at once, all timed over the same window (it opens when the last one has warmed up); the total
mixtures/s for each k, until more cells raise it by less than 5 % (or ``--max-cells``). On a GPU that is how
many grid cells to pack per GPU (Ray's ``gpu`` fraction per cell); on a CPU each process gets one torch
thread, as a Ray cell does.

    .venv/bin/python -m sepbench.perf.device_throughput [--methods fcsae,convsep,ligt] [--batches 64,256,1024]
        [--seconds 10] [--max-cells 8 | --cells 1,2,4,8] [--device cuda|cpu] [--threads N]

Timings synchronise the device (``torch.cuda.synchronize``) before reading the clock.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import statistics
import time
from collections.abc import Iterator

import torch

from sepbench.datasets.mixtures import Batch
from sepbench.datasets.mnist import load_mnist
from sepbench.perf.common import LEARNED, build_method, endless_batches, load, training_step
from sepbench.precision import autocast, resolve_precision

GAIN = 0.05  # stop packing when one more cell adds less than this to the total


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(step, batches: Iterator[Batch], device: torch.device, seconds: float,
                min_steps: int = 3) -> tuple[int, float]:
    """Run ``step`` for about ``seconds`` (at least ``min_steps``); returns (steps, elapsed seconds)."""
    group = 5 if device.type == "cuda" else 1  # a GPU syncs every 5 steps: the clock is read after it finished
    sync(device)
    started = time.perf_counter()
    steps = 0
    while steps < min_steps or time.perf_counter() - started < seconds:
        for _ in range(group):
            step(next(batches))
            steps += 1
        sync(device)
    return steps, time.perf_counter() - started


def training_rate(name: str, images: torch.Tensor, batch: int, device: torch.device, seconds: float) -> float:
    """Training mixtures/s of ``name`` at ``batch`` on ``device`` (after 3 untimed warm-up steps)."""
    method = build_method(name)
    precision = resolve_precision("auto", device, method.supports_bf16)
    _, step = training_step(method, precision, device)
    batches = endless_batches(images, batch)
    for _ in range(3):
        step(next(batches))
    steps, elapsed = timed_steps(step, batches, device, seconds)
    return steps * batch / elapsed


def separation_rate(name: str, images: torch.Tensor, batch: int, device: torch.device, seconds: float) -> float:
    """Separation mixtures/s of a fresh ``name`` network in chunks of ``batch`` on ``device``."""
    method = build_method(name)
    precision = resolve_precision("auto", device, method.supports_bf16)
    torch.manual_seed(0)
    net = method.make_network(device).eval()
    y = next(endless_batches(images, batch)).y

    def step(_batch: Batch) -> None:
        with torch.no_grad(), autocast(device, precision):
            method.predict(net, y)

    for _ in range(2):
        step(None)
    steps, elapsed = timed_steps(step, itertools.repeat(None), device, seconds)
    return steps * batch / elapsed


def _cell(name: str, device: str, batch: int, ready, seconds: float, seed: int, results) -> None:
    """One packed cell: warm up, wait until every cell has warmed up, train for ``seconds``, report mixtures/s."""
    dev = torch.device(device)
    if dev.type == "cpu":
        torch.set_num_threads(1)
    images = load_mnist().train.to(dev)
    method = build_method(name)
    _, step = training_step(method, resolve_precision("auto", dev, method.supports_bf16), dev, seed=seed)
    batches = endless_batches(images, batch, seed=seed * 1000)
    for _ in range(3):
        step(next(batches))
    sync(dev)
    ready.wait()  # the common window opens when the last cell is ready
    steps, elapsed = timed_steps(step, batches, dev, seconds)
    results.put(steps * batch / elapsed)


def packed_rate(name: str, cells: int, device: torch.device, batch: int, seconds: float,
                setup_s: float) -> list[float]:
    """Mixtures/s of each of ``cells`` processes training ``name`` on ``device`` at once, over a common window.

    ``setup_s``: the most seconds a process may take to start, load MNIST and warm up."""
    ctx = mp.get_context("spawn")  # CUDA cannot be used in forked children
    results = ctx.Queue()
    ready = ctx.Barrier(cells, timeout=setup_s)
    procs = [ctx.Process(target=_cell, args=(name, str(device), batch, ready, seconds, i, results))
             for i in range(cells)]
    for p in procs:
        p.start()
    try:
        rates = [results.get(timeout=setup_s + 20 * seconds + 60) for _ in procs]
    except Exception:
        for p in procs:
            p.kill()
        raise SystemExit(f"packed {name} cells did not report (exit status {[p.exitcode for p in procs]})") from None
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"a packed {name} cell exited with status {p.exitcode}")
    return rates


def cell_counts(text: str, most: int) -> list[int]:
    """``1,2,4,8`` → [1, 2, 4, 8]; empty → 1, 2, …, ``most``."""
    return [int(k) for k in text.split(",") if k] if text else list(range(1, most + 1))


def packing(name: str, counts: list[int], device: torch.device, seconds: float, setup_s: float,
            echo=print) -> tuple[list[dict], int | None]:
    """Total training mixtures/s (batch 64) of k cells at once for each k in ``counts``, until one more step adds
    less than ``GAIN``; returns the rows and the best k (None: still rising at the last k)."""
    rows: list[dict] = []
    best_total, best_k = 0.0, None
    for k in counts:
        rates = packed_rate(name, k, device, 64, seconds, setup_s)
        total = sum(rates)
        rows.append({"method": name, "cells": k, "total_mixtures_per_s": total,
                     "median_cell_mixtures_per_s": statistics.median(rates)})
        echo(f"  {name:8} k={k}: total {total:9,.0f} mixtures/s (per cell median "
             f"{statistics.median(rates):,.0f}); {load()}")
        if best_k is not None and total < best_total * (1 + GAIN):
            echo(f"  {name:8} → {best_k} cell(s) per device: {k} cells changed the total by "
                 f"{total / best_total - 1:+.1%}")
            return rows, best_k
        best_total, best_k = total, k
    echo(f"  {name:8} → still rising at {counts[-1]} cells")
    return rows, None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(LEARNED), help="comma-separated learned methods")
    parser.add_argument("--batches", default="64,256,1024", help="batch sizes for part 1")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed window per measurement")
    parser.add_argument("--max-cells", type=int, default=8, help="most processes packed in part 2 (0: skip)")
    parser.add_argument("--cells", default="", help="part 2: the numbers of cells to try, e.g. 1,2,4,8 "
                                                    "(default 1, 2, …, --max-cells)")
    parser.add_argument("--setup-seconds", type=float, default=120.0,
                        help="part 2: the most time a process may take to start and warm up")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="part 1 torch threads on a CPU")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n for n in args.methods.split(",") if n]
    sizes = [int(b) for b in args.batches.split(",") if b]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    images = load_mnist().train.to(device)
    print(f"device: {where}; precision auto → {resolve_precision('auto', device)}; {args.seconds:g} s windows; "
          f"{load()}", flush=True)

    print("\npart 1: mixtures/s (training · separation)", flush=True)
    print(f"  {'method':8}" + "".join(f" | batch {b:<15}" for b in sizes))
    for name in names:
        cells = []
        for b in sizes:
            train = training_rate(name, images, b, device, args.seconds)
            separate = separation_rate(name, images, b, device, args.seconds)
            cells.append(f" | {train:9,.0f} · {separate:9,.0f}")
        print(f"  {name:8}" + "".join(cells), flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()

    counts = cell_counts(args.cells, args.max_cells)
    if counts:
        print(f"\npart 2: k cells training at once (batch 64), total mixtures/s; stop when more cells add < "
              f"{GAIN:.0%}", flush=True)
        for name in names:
            packing(name, counts, device, args.seconds, args.setup_seconds, echo=lambda text: print(text, flush=True))


if __name__ == "__main__":
    main()
