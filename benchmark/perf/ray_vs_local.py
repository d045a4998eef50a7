"""Benchmark: wall time of ``bench run`` with ``--executor ray`` against ``--executor local``.

Four identical small training cells (fcsae, one scenario, four seeds), each run end to end through the real
command line, as a user would: process start, imports, MNIST, (for Ray) starting and stopping the private
Ray. Local runs the cells one after another with torch's default threads; Ray runs as many at a time as
there are CPUs, one thread each. Prints the median of ``--repeats`` runs of each and their ratio, the load
average before and after (other work on the machine skews it), and where Ray's time went.

    .venv/bin/python -m sepbench.perf.ray_vs_local [--repeats 3] [--mixtures 60000] [--epochs 10] [--hidden 128]

The default cells are small (fcsae with 128 hidden units): torch's second intra-op thread gains nothing on
them, which is where running cells side by side pays. ``--hidden 1024 --mixtures 30000 --epochs 4`` gives
cells that use two threads well (1.4× faster than one), where Ray's ceiling on two cores is about 1.4×.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def grid(cells: int, mixtures: int, epochs: int, hidden: int) -> dict:
    return {
        "name": "ray-vs-local",
        "dataset": {"name": "mnist", "train_size": 60000, "test_size": 10000},
        "scenarios": {"single": {"weights": [[1, 1]], "downsample": 2}},
        "noise": [0.01],
        "seeds": list(range(cells)),
        "train": {"mixtures": mixtures, "epochs": epochs, "batch_size": 64, "lr": 1.0e-3},
        "test": {"mixtures": 500},
        "methods": [{"method": "fcsae", "params": {"hidden": hidden}}],
    }


def run_once(grid_path: Path, out: Path, executor: str, data_dir: str | None) -> dict:
    """One ``bench run``: wall seconds, when Ray was ready and the first cell done, per-cell seconds."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "sepbench.cli", "run", "--grid", str(grid_path), "--out", str(out),
               "--executor", executor]
    if data_dir:
        command += ["--data-dir", data_dir]
    started = time.perf_counter()
    marks: dict[str, float] = {}
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in proc.stderr:
        now = time.perf_counter() - started
        if line.startswith("  Ray:"):
            marks.setdefault("ray_ready", now)
        elif line.startswith("[1/"):
            marks.setdefault("first_cell", now)
    if proc.wait() != 0:
        raise SystemExit(f"bench run --executor {executor} failed with exit status {proc.returncode}")
    wall = time.perf_counter() - started
    metas = [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]
    return {"wall": wall, **marks, "cell_seconds": [m["seconds"] for m in metas],
            "fit_seconds": [m["fit_seconds"] for m in metas], "threads": sorted({m["threads"] for m in metas})}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mixtures", type=int, default=60000, help="training mixtures per epoch")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=128, help="fcsae's hidden units")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="ray-vs-local-"))
    grid_path = work / "grid.yaml"
    grid_path.write_text(yaml.safe_dump(grid(args.cells, args.mixtures, args.epochs, args.hidden)))
    load_before = os.getloadavg()
    print(f"{args.cells} fcsae cells ({args.mixtures} mixtures × {args.epochs} epochs, hidden {args.hidden}); "
          f"{os.cpu_count()} CPUs; load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    results: dict[str, list[dict]] = {"local": [], "ray": []}
    try:
        for repeat in range(args.repeats):
            order = ("local", "ray") if repeat % 2 == 0 else ("ray", "local")  # alternate: drift hits both
            for executor in order:
                result = run_once(grid_path, work / executor, executor, args.data_dir)
                results[executor].append(result)
                extra = "".join(f", {k} at {result[k]:.1f}s" for k in ("ray_ready", "first_cell") if k in result)
                print(f"  run {repeat + 1} {executor:>5}: {result['wall']:6.1f}s (cells "
                      f"{', '.join(f'{s:.1f}' for s in result['cell_seconds'])}s, threads {result['threads']}"
                      f"{extra})", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    local = statistics.median(r["wall"] for r in results["local"])
    ray = statistics.median(r["wall"] for r in results["ray"])
    print(f"median wall: local {local:.1f}s, ray {ray:.1f}s → ray is {local / ray:.2f}× faster "
          f"(target ≥ 1.6×); load average after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    per_cell = {k: statistics.median(s for r in v for s in r["cell_seconds"]) for k, v in results.items()}
    ready = statistics.median(r.get("ray_ready", float("nan")) for r in results["ray"])
    print(f"median cell: local {per_cell['local']:.1f}s, ray {per_cell['ray']:.1f}s; "
          f"ray ready {ready:.1f}s after the command started")


if __name__ == "__main__":
    main()
