"""What else might raise a device's training throughput, measured beside packing cells: seeds as one model, compiling.

Two candidates for small networks on a large GPU, each against the plain training step at the same batch
(:func:`sepbench.perf.device_throughput.training_rate`):

* **k seeds as one batched model** (``torch.func``): the k networks of one method × scenario × σ (one per seed)
  stacked with ``stack_module_state`` and trained by one ``vmap``-ed step, each on its own batches — k times the
  work per kernel launch. A design change of the cell (k seeds would become one unit of work), so it is measured
  before it is proposed (docs/performance.md). Under ``vmap`` BatchNorm cannot update running statistics in place
  (``replace_all_batch_norm_modules_`` turns them off) and the CPU's fast dropout kernel is not used; a network
  that ``vmap`` cannot trace is reported as such, with the first line of the error.
* **torch.compile** of the loss (forward; backward through AOTAutograd), with CUDA graphs on a GPU
  (``mode="reduce-overhead"``); the compile time is reported beside the rate. The CPU smoke run uses the
  ``aot_eager`` backend (no C++ compiler, seconds instead of minutes): it proves the code path, not a speed.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import nn

from sepbench.datasets.mixtures import Batch
from sepbench.perf.common import build_method, endless_batches, training_step
from sepbench.perf.device_throughput import timed_steps
from sepbench.precision import autocast, resolve_precision


class _Loss(nn.Module):
    """A method's training loss as a module's forward, so that ``functional_call`` can swap its parameters."""

    def __init__(self, method: Any, net: nn.Module) -> None:
        super().__init__()
        self.method, self.net = method, net

    def forward(self, y: torch.Tensor, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.method.training_loss(self.net, Batch(y, x, z))


def stacked_step(name: str, k: int, device: torch.device, precision: str):
    """One training step of ``k`` networks of ``name`` (seeds 0 … k-1) as one ``vmap``-ed model; it takes a list
    of k batches (one per seed) and returns the k losses."""
    from torch.func import functional_call, replace_all_batch_norm_modules_, stack_module_state, vmap

    method = build_method(name)
    models = []
    for seed in range(k):
        torch.manual_seed(seed)
        net = method.build_network().to(device)
        replace_all_batch_norm_modules_(net)
        models.append(_Loss(method, net).train())
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    # make_optimiser takes a module; the stacked parameters are plain tensors (same Adam, fused where it can be)
    optimiser = torch.optim.Adam(list(params.values()), lr=1e-3, fused=device.type in ("cpu", "cuda") or None)
    losses_of = vmap(lambda p, b, y, x, z: functional_call(base, (p, b), (y, x, z)), randomness="different")

    def step(batches: list[Batch]) -> torch.Tensor:
        optimiser.zero_grad(set_to_none=True)
        y, x, z = (torch.stack(parts) for parts in zip(*batches, strict=True))
        with autocast(device, precision):
            losses = losses_of(params, buffers, y, x, z)
        losses.sum().backward()
        optimiser.step()
        return losses.detach()

    return step


def stacked_rate(name: str, k: int, images: torch.Tensor, batch: int, device: torch.device,
                 seconds: float) -> float:
    """Total training mixtures/s of ``k`` seeds of ``name`` trained as one model (3 untimed warm-up steps)."""
    method = build_method(name)
    step = stacked_step(name, k, device, resolve_precision("auto", device, method.supports_bf16))
    streams = [endless_batches(images, batch, seed=1000 * seed) for seed in range(k)]
    batches = (list(group) for group in zip(*streams, strict=False))
    for _ in range(3):
        step(next(batches))
    steps, elapsed = timed_steps(step, batches, device, seconds)
    return steps * k * batch / elapsed


def compiled_rate(name: str, images: torch.Tensor, batch: int, device: torch.device, seconds: float,
                  backend: str, mode: str | None) -> tuple[float, float]:
    """(compile seconds, training mixtures/s) of ``name`` with its loss compiled by ``torch.compile``."""
    method = build_method(name)
    precision = resolve_precision("auto", device, method.supports_bf16)
    _, step = training_step(method, precision, device, compile_options={"backend": backend, "mode": mode})
    batches = endless_batches(images, batch)
    started = time.perf_counter()
    for _ in range(3):  # the first calls compile (and record CUDA graphs)
        step(next(batches))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    compile_s = time.perf_counter() - started
    steps, elapsed = timed_steps(step, batches, device, seconds)
    torch._dynamo.reset()
    return compile_s, steps * batch / elapsed


def alternatives(methods: list[str], images: torch.Tensor, device: torch.device, batch: int, seeds: tuple[int, ...],
                 seconds: float, backend: str, mode: str | None, single: dict[str, float], time_left,
                 cost_s: float, echo=print) -> dict[str, Any]:
    """Rows for both candidates, per method, against ``single`` (the plain step's mixtures/s at ``batch``).

    ``time_left()`` is checked before each method; one needs about ``cost_s`` seconds, else it is skipped."""
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for name in methods:
        if time_left() < cost_s:
            skipped.append(name)
            continue
        base = single.get(name)
        candidates = [("seeds as one model", k) for k in seeds] + [("torch.compile", 1)]
        failed: set[str] = set()
        for what, k in candidates:
            if what in failed:  # vmap failed at a smaller k: it fails at every k
                continue
            row: dict[str, Any] = {"method": name, "candidate": what, "seeds": k, "batch": batch,
                                   "total_mixtures_per_s": None, "vs_plain_step": None, "compile_s": None,
                                   "note": f"backend {backend}" + (f", mode {mode}" if mode else "")
                                   if what == "torch.compile" else ""}
            try:
                if what == "torch.compile":
                    row["compile_s"], rate = compiled_rate(name, images, batch, device, seconds, backend, mode)
                else:
                    rate = stacked_rate(name, k, images, batch, device, seconds)
            except Exception as exc:  # a network the candidate cannot handle is a finding, not a failed check
                row["note"] = f"not possible: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}"
                failed.add(what)
                rows.append(row)
                echo(f"  {name} {what} ×{k}: {row['note']}")
                continue
            row["total_mixtures_per_s"] = rate
            row["vs_plain_step"] = rate / base if base else None
            rows.append(row)
            echo(f"  {name} {what} ×{k}: {rate:,.0f} mixtures/s"
                 + (f" ({rate / base:.2f}× the plain step)" if base else ""))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"rows": rows, "skipped_for_time": skipped}


def alternatives_for(check: Any, methods: list[str], rates: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The GPU check's step: both candidates at the largest measured batch ≤ 64, within the check's time budget
    (``check``: :class:`sepbench.perf.gpu_check.Check`)."""
    from sepbench.datasets.mnist import load_mnist

    profile = check.profile
    batch = max(b for b in profile.batches if b <= 64)
    single = {r["method"]: r["train_mixtures_per_s"] for r in rates or [] if r["batch"] == batch}
    device = torch.device(profile.device)
    found = alternatives(methods, load_mnist().train.to(device), device, batch, profile.alt_seeds, profile.seconds,
                         *profile.alt_compile, single, lambda: profile.budget - check.elapsed(), profile.alt_cost,
                         echo=lambda text: print(text, flush=True))
    for name in found["skipped_for_time"]:
        check.skip(f"seeds as one model, torch.compile: {name}", f"time budget ({profile.budget:g} s) nearly spent")
    return found
