"""The GPU check's outputs: raw numbers (results.json, one CSV per table) and summary.md; and the projection of
``bench run --grid default``'s wall time from the measured rates."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from sepbench.progress import format_duration

#: what only a GPU can answer; a run without one names each as skipped
GPU_ITEMS = (
    "tests that need CUDA, run on CUDA (batched SSIM vs the CPU, batch independence under CUDA bf16, a tiny "
    "grid's cells on the GPU)",
    "GPU training and separation mixtures/s at batch 64, 256 and 1,024",
    "cells per GPU until the total throughput stops rising",
    "k seeds trained as one batched model and torch.compile with CUDA graphs, against the plain step",
    "fraction of the GPU's bf16 matmul peak each method reaches",
    "projected wall time of `bench run --grid default` on 1 and 2 GPUs",
)
STARTUP_S = 10.0  # per cell: a worker loads MNIST, builds the test set, moves data to the device


def projection(results: dict[str, Any]) -> dict[str, Any]:
    """Wall time of the default grid on 1 and 2 devices like this one, from the measured rates.

    Per learned cell: training mixtures / the method's packed total rate (k cells per device share it) plus,
    spread over its k slots, the separation of the test set, its scoring on one CPU and a fixed start-up; the
    wall time is that work over the devices, never less than the longest single cell nor the CPU-only cells'
    work over the CPU cores. Integer packing and the tail of the run are not modelled.
    """
    from sepbench.grid import load_grid
    from sepbench.plan import plan_grid

    rates = {(r["method"], r["batch"]): r for r in results.get("throughput") or []}
    if not rates:
        raise RuntimeError("no throughput numbers to project from")
    packing = results.get("packing") or {}
    totals = {(r["method"], r["cells"]): r["total_mixtures_per_s"] for r in packing.get("rows", [])}
    score_s = results.get("score_seconds_per_mixture") or 0.0
    cpus = (results.get("environment") or {}).get("cpu_count") or 1
    plan = plan_grid(load_grid("default"))
    per_method: dict[str, dict[str, float]] = {}
    gpu_work = cpu_work = longest = 0.0
    unmeasured: dict[str, int] = {}
    for cell in plan.cells:
        if cell.budget is None:
            cpu_work += cell.expected_seconds
            continue
        batches = sorted(b for m, b in rates if m == cell.method)
        if not batches:  # not measured (--methods): left out, and said so
            unmeasured[cell.method] = unmeasured.get(cell.method, 0) + 1
            continue
        batch = min(batches, key=lambda b: abs(b - cell.budget.batch_size))
        single = rates[(cell.method, batch)]["train_mixtures_per_s"]
        separate = rates[(cell.method, batches[-1])]["separate_mixtures_per_s"]
        k = (packing.get("best") or {}).get(cell.method, {}).get("cells", 1)
        total = totals.get((cell.method, k), single) if cell.budget.batch_size == 64 else single
        overhead = STARTUP_S + cell.test_mixtures / separate + cell.test_mixtures * score_s
        mixtures = cell.budget.epochs * cell.budget.mixtures
        work = mixtures / total + overhead / k
        gpu_work += work
        longest = max(longest, mixtures / (total / k) + overhead)
        entry = per_method.setdefault(cell.method, {"cells": 0, "cells_per_device": k, "device_seconds": 0.0,
                                                     "rate_used": total, "batch_measured": batch})
        entry["cells"] += 1
        entry["device_seconds"] += work
    walls = {str(n): max(gpu_work / n, longest, cpu_work / cpus) for n in (1, 2)}
    return {"grid": "default", "cells": len(plan.cells), "learned_cells": sum(v["cells"] for v in per_method.values()),
            "per_method": per_method, "wall_seconds": walls, "longest_cell_seconds": longest,
            "cpu_only_seconds": cpu_work, "device": (results.get("profile_sizes") or {}).get("device"),
            "unmeasured_cells": unmeasured}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_outputs(out: Path, results: dict[str, Any]) -> None:
    """results.json, the CSV tables and summary.md, from what has been measured so far."""
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    _write_csv(out / "cuda-tests.csv", results.get("cuda_tests") or [])
    _write_csv(out / "throughput.csv", results.get("throughput") or [])
    _write_csv(out / "packing.csv", (results.get("packing") or {}).get("rows", []))
    _write_csv(out / "roofline.csv", (results.get("roofline") or {}).get("rows", []))
    _write_csv(out / "alternatives.csv", (results.get("alternatives") or {}).get("rows", []))
    proj = results.get("projection") or {}
    walls = proj.get("wall_seconds", {})
    _write_csv(out / "projection.csv", [{"gpus": n, "wall_seconds": s} for n, s in walls.items()])
    (out / "summary.md").write_text(summary(results))


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows), ""]


def summary(results: dict[str, Any]) -> str:
    """The markdown summary: one section per step, then what was skipped and what failed."""
    gpu = results.get("profile") == "gpu"
    env = results.get("environment") or {}
    where = env.get("gpu") or f"no GPU (CPU: {env.get('cpu', '?')})"
    lines = [f"# GPU check, {results.get('date', '?')}", "",
             f"Profile **{results.get('profile')}** on {where}; {results.get('seconds', 0):.0f} s in all."
             + ("" if gpu else " **CPU smoke run: tiny sizes that prove the code path; its numbers are not "
                              "measurements.**"), ""]
    lines += ["## Environment", "", *_table(["key", "value"], [[k, v] for k, v in env.items()])]
    tests = results.get("cuda_tests") or []
    counts = {o: sum(t["outcome"] == o for t in tests) for o in ("passed", "failed", "error", "skipped")}
    lines += ["## Tests that need CUDA (`pytest -m cuda`)", "",
              ", ".join(f"{v} {k}" for k, v in counts.items()) + ".", "",
              *_table(["test", "outcome", "s", "message"],
                      [[t["test"], t["outcome"], t["seconds"], t["message"]] for t in tests])]
    rates = results.get("throughput") or []
    batches = sorted({r["batch"] for r in rates})
    methods = list(dict.fromkeys(r["method"] for r in rates))
    by = {(r["method"], r["batch"]): r for r in rates}
    lines += ["## Mixtures/s: training · separation", "",
              *_table(["method", *[f"batch {b}" for b in batches]],
                      [[m, *[f"{by[m, b]['train_mixtures_per_s']:,.0f} · {by[m, b]['separate_mixtures_per_s']:,.0f}"
                             if (m, b) in by else "–" for b in batches]] for m in methods])]
    packing = results.get("packing") or {}
    lines += ["## Cells sharing one device (training, batch 64): total mixtures/s", "",
              *_table(["method", "cells", "total", "per cell (median)"],
                      [[r["method"], r["cells"], f"{r['total_mixtures_per_s']:,.0f}",
                        f"{r['median_cell_mixtures_per_s']:,.0f}"] for r in packing.get("rows", [])])]
    for name, best in (packing.get("best") or {}).items():
        rising = " (still rising: try more)" if best["still_rising"] else ""
        lines.append(f"- {name}: {best['cells']} cell(s) per device{rising} → `resources: {{gpu: "
                     f"{1 / best['cells']:.3g}}}`")
    lines.append("")
    alt = (results.get("alternatives") or {}).get("rows", [])
    if alt:
        lines += [f"## Other ways to raise training throughput (batch {alt[0]['batch']} per network)", "",
                  "k seeds of one method trained as one `vmap`-ed model (total mixtures/s of the k), and the loss "
                  "compiled; against the plain step of the table above.", "",
                  *_table(["method", "candidate", "seeds", "total mixtures/s", "× plain step", "compile s", "note"],
                          [[r["method"], r["candidate"], r["seeds"],
                            "–" if r["total_mixtures_per_s"] is None else f"{r['total_mixtures_per_s']:,.0f}",
                            "–" if r["vs_plain_step"] is None else f"{r['vs_plain_step']:.2f}",
                            "–" if r["compile_s"] is None else f"{r['compile_s']:.0f}", r["note"]] for r in alt])]
    roof = results.get("roofline") or {}
    if roof:
        lines += ["## Fraction of the measured bf16 matmul peak", "",
                  f"Peak: {roof['peak_bf16_tflops']:.1f} TFLOP/s (`torch.mm`, {roof['matmul_n']}² bf16). FLOPs are "
                  "matmuls and convolutions of one training step (forward + backward) per mixture.", "",
                  *_table(["method", "batch", "MFLOP/mixture", "TFLOP/s", "of peak"],
                          [[r["method"], r["batch"], f"{r['train_mflop_per_mixture']:.1f}",
                            f"{r['achieved_tflops']:.3f}", f"{100 * r['fraction_of_bf16_peak']:.2f} %"]
                           for r in roof.get("rows", [])])]
    proj = results.get("projection") or {}
    if proj:
        lines += [f"## Projected wall time of `bench run --grid default` ({proj['cells']} cells, "
                  f"{proj['learned_cells']} learned; device {proj['device']})", "",
                  *_table(["devices", "wall time"],
                          [[n, format_duration(s)] for n, s in proj["wall_seconds"].items()]),
                  *[f"- {m}: {v['cells']} cells, {v['cells_per_device']} per device at {v['rate_used']:,.0f} "
                    f"mixtures/s, {format_duration(v['device_seconds'])} of device time" for m, v in
                    proj["per_method"].items()],
                  f"- longest cell {format_duration(proj['longest_cell_seconds'])}; CPU-only cells "
                  f"{format_duration(proj['cpu_only_seconds'])} of CPU time",
                  *[f"- left out, not measured: {m} ({n} cells)" for m, n in proj["unmeasured_cells"].items()], ""]
    lines += ["## Skipped", ""]
    skipped = [f"- {s['item']}: {s['reason']}" for s in results.get("skipped", [])]
    skipped += [f"- test {t['test']}: {t['message'] or 'skipped'}" for t in tests if t["outcome"] == "skipped"]
    lines += (skipped or ["- nothing"]) + [""]
    lines += ["## Errors", "", *([f"- {k}: {v}" for k, v in results.get("errors", {}).items()] or ["- none"]), ""]
    lines += ["## Step times", "", *[f"- {k}: {v['seconds']} s" for k, v in results.get("steps", {}).items()], ""]
    return "\n".join(lines)
