"""Benchmark: throughput on one device at batch 64, 256 and 1,024, and how many cells can share the device.

Part 1, per learned method: training mixtures/s (steps as ``fit`` runs them: batches generated on the device,
``precision: auto``, the fused Adam) and separation mixtures/s (eval mode, no gradients, the same autocast),
for each batch size. Part 2: k = 1, 2, 3, … training processes ("cells", batch 64) on the same device at once,
all timed over the same window; the total mixtures/s for each k, until adding a cell raises it by less than
5 % (or ``--max-cells``). On a GPU that is how many grid cells to pack per GPU (Ray's ``gpu`` fraction per
cell); on a CPU each process gets one torch thread, as a Ray cell does.

    .venv/bin/python -m sepbench.perf.device_throughput [--methods fcsae,convsep,ligt] [--batches 64,256,1024]
        [--seconds 10] [--max-cells 8] [--device cuda|cpu] [--threads N]

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


def _cell(name: str, device: str, batch: int, start_at: float, seconds: float, seed: int, results) -> None:
    """One packed cell: warm up, wait for the common start, train for ``seconds``, report mixtures/s."""
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
    late = time.time() - start_at  # > 0: this cell was not ready when the common window opened
    time.sleep(max(0.0, -late))
    steps, elapsed = timed_steps(step, batches, dev, seconds)
    results.put((steps * batch / elapsed, max(0.0, late)))


def packed_rate(name: str, cells: int, device: torch.device, batch: int, seconds: float,
                setup_s: float) -> list[tuple[float, float]]:
    """Per cell (mixtures/s, seconds it started late) with ``cells`` processes training ``name`` at once."""
    ctx = mp.get_context("spawn")  # CUDA cannot be used in forked children
    results = ctx.Queue()
    start_at = time.time() + setup_s  # every process has started, loaded MNIST and warmed up by then
    procs = [ctx.Process(target=_cell, args=(name, str(device), batch, start_at, seconds, i, results))
             for i in range(cells)]
    for p in procs:
        p.start()
    rates = [results.get(timeout=setup_s + 20 * seconds + 300) for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"a packed {name} cell exited with status {p.exitcode}")
    return rates


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(LEARNED), help="comma-separated learned methods")
    parser.add_argument("--batches", default="64,256,1024", help="batch sizes for part 1")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed window per measurement")
    parser.add_argument("--max-cells", type=int, default=8, help="most processes packed in part 2 (0: skip)")
    parser.add_argument("--setup-seconds", type=float, default=30.0,
                        help="part 2: time for the processes to start and warm up before the common window")
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

    if args.max_cells > 0:
        print(f"\npart 2: k cells training at once (batch 64), total mixtures/s; stop when a cell adds < "
              f"{GAIN:.0%}", flush=True)
        for name in names:
            best = 0.0
            for k in range(1, args.max_cells + 1):
                runs = packed_rate(name, k, device, 64, args.seconds, args.setup_seconds)
                rates = [rate for rate, _ in runs]
                total = sum(rates)
                late = max(late for _, late in runs)
                print(f"  {name:8} k={k}: total {total:9,.0f} mixtures/s (per cell median "
                      f"{statistics.median(rates):,.0f}); {load()}"
                      + (f"; a cell started {late:.1f} s late: raise --setup-seconds" if late > 0.5 else ""),
                      flush=True)
                if total < best * (1 + GAIN):
                    print(f"  {name:8} → {k - 1} cell(s) per device: cell {k} changed the total by "
                          f"{total / best - 1:+.1%}", flush=True)
                    break
                best = total
            else:
                print(f"  {name:8} → still rising at {args.max_cells} cells", flush=True)


if __name__ == "__main__":
    main()
