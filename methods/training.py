"""The shared torch training loop: batches from :class:`sepbench.TrainingData`, validation each epoch.

Adam (the paper's; a method may choose another optimiser and a learning-rate schedule through
``TorchMethod.configure_optimiser``, e.g. :func:`adamw_cosine`); the weights of the best validation epoch are
kept; each epoch's record holds its seconds and the seconds elapsed so far. Training steps run at the resolved
precision (bf16 autocast or fp32, :mod:`sepbench.precision`); validation always runs in fp32, so that the choice
of the best epoch does not depend on the precision.

Checkpoints (``FitContext.checkpoint``): after every epoch the loop writes its whole state atomically — the
network, the optimiser and schedule, the best epoch's weights and loss, the history, and the random states (the
training data's generator, torch's CPU generator and the device's CUDA generator) — so that a training killed
mid-way resumes after its last finished epoch and ends exactly as an uninterrupted one (bit-identical on the same
machine). A checkpoint is used only when its key is ``FitContext.checkpoint_key``; one that cannot be read is
ignored with a warning (training starts at epoch 1), never trusted in part.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sepbench.api import FitContext, TrainBudget
from sepbench.datasets.mixtures import Batch, TrainingData
from sepbench.files import atomic_output
from sepbench.precision import autocast, resolve_precision


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def make_optimiser(net: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam; the fused kernel where every parameter is a floating tensor on the CPU or a CUDA GPU.

    Same update rule as the default per-tensor loop (rounding aside), and faster for small networks
    (docs/performance.md, "Rates behind the code").
    """
    params = list(net.parameters())
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None)


def evaluate(net: nn.Module, batch: Batch, loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
             chunk: int = 1024) -> float:
    """Mean loss of ``net`` over a fixed batch, in eval mode and without gradients."""
    net.eval()
    total = torch.zeros((), dtype=torch.float64, device=batch.y.device)
    count = 0
    with torch.no_grad():
        for start in range(0, len(batch.y), chunk):
            part = Batch(*(t[start:start + chunk] for t in batch))
            total += loss_fn(net, part).double() * len(part.y)  # summed on the device: one sync at the end
            count += len(part.y)
    return float(total) / max(count, 1)


#: builds the optimiser and an optional per-step learning-rate schedule: (net, budget, total steps) → both
OptimiserFactory = Callable[[nn.Module, TrainBudget, int],
                            tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]]


def default_optimiser(net: nn.Module, budget: TrainBudget, total_steps: int
                      ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """The paper's choice: Adam at the budget's constant learning rate, no schedule."""
    return make_optimiser(net, budget.lr), None


def adamw_cosine(net: nn.Module, budget: TrainBudget, total_steps: int, weight_decay: float = 0.01,
                 warmup: float = 0.05) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW (decoupled weight decay on weights of rank ≥ 2 only) and a per-step schedule: a linear warm-up
    over ``warmup`` of the steps, then a cosine decay from the budget's lr to zero at the last step."""
    params = [p for p in net.parameters() if p.requires_grad]
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    optimiser = torch.optim.AdamW([g for g in groups if g["params"]], lr=budget.lr, fused=fused or None)
    warm = max(1, round(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return optimiser, torch.optim.lr_scheduler.LambdaLR(optimiser, factor)


def train_network(net: nn.Module, data: TrainingData, ctx: FitContext,
                  loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
                  precision: str | None = None, eval_chunk: int = 1024,
                  optimiser_factory: OptimiserFactory = default_optimiser) -> list[dict[str, float]]:
    """Train ``net`` on ``data`` within ``ctx.budget``; keep the weights of the best validation epoch.

    ``precision`` ('fp32' or 'bf16') defaults to the budget's, with 'auto' resolved for ``ctx.device``;
    validation runs in chunks of ``eval_chunk`` mixtures; ``optimiser_factory`` builds the optimiser and an
    optional learning-rate schedule, stepped after every training step.
    """
    budget: TrainBudget = ctx.budget
    precision = precision or resolve_precision(budget.precision, ctx.device)
    steps_per_epoch = math.ceil(len(data) / budget.batch_size)
    optimiser, schedule = optimiser_factory(net, budget, steps_per_epoch * budget.epochs)
    history: list[dict[str, float]] = []
    best_loss, best_state = math.inf, None
    elapsed = 0.0
    first = 1
    ctx.resumed_from_epoch = None
    saved = _read_checkpoint(ctx) if ctx.checkpoint is not None else None
    if saved is not None and _restore(saved, net, optimiser, schedule, data, ctx):
        first = saved["epoch"] + 1
        best_loss, history, elapsed = float(saved["best_loss"]), [dict(r) for r in saved["history"]], \
            float(saved["elapsed"])
        best_state = None if saved["best_state"] is None else \
            {k: v.to(ctx.device) for k, v in saved["best_state"].items()}
        ctx.resumed_from_epoch = saved["epoch"]
        text = f"resumed from epoch {saved['epoch']} of {budget.epochs} (checkpoint {ctx.checkpoint})"
        ctx.logger.info("%s", text)
        ctx.progress({"notice": text})
    keep = ctx.checkpoint is not None
    for epoch in range(first, budget.epochs + 1):
        net.train()
        started = time.perf_counter()
        running = torch.zeros((), device=ctx.device)
        for step, batch in enumerate(data.epoch(budget.batch_size), start=1):
            optimiser.zero_grad(set_to_none=True)
            with autocast(ctx.device, precision):
                loss = loss_fn(net, batch)
            loss.backward()
            optimiser.step()
            if schedule is not None:
                schedule.step()
            running += loss.detach()
            if step % 50 == 0 or step == steps_per_epoch:
                mean = float(running) / step
                if not math.isfinite(mean):
                    raise TrainingDiverged(
                        f"training loss became {mean} in epoch {epoch} by step {step}: "
                        f"try a smaller lr than {budget.lr:g}"
                    )
                ctx.progress({"epoch": epoch, "epochs": budget.epochs, "step": step,
                              "steps": steps_per_epoch, "train_loss": mean})
        train_loss = float(running) / steps_per_epoch
        val_loss = evaluate(net, data.validation, loss_fn, eval_chunk)  # fp32 at every precision
        seconds = time.perf_counter() - started
        elapsed += seconds
        record = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "seconds": seconds,
                  "elapsed": elapsed}  # this epoch's seconds (training and validation), and all epochs' so far
        history.append(record)
        ctx.logger.info("epoch %d/%d train %.5f val %.5f (%.1fs)", epoch, budget.epochs, train_loss, val_loss,
                        record["seconds"])
        ctx.progress({**record, "epochs": budget.epochs, "step": steps_per_epoch, "steps": steps_per_epoch})
        if val_loss < best_loss:
            best_loss = val_loss
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if keep:
            state = {"format": CHECKPOINT_FORMAT, "key": ctx.checkpoint_key, "epoch": epoch, "epochs": budget.epochs,
                     "net": net.state_dict(), "optimiser": optimiser.state_dict(),
                     "schedule": None if schedule is None else schedule.state_dict(), "best_loss": best_loss,
                     "best_state": best_state, "history": history, "elapsed": elapsed,
                     "rng": _rng_states(data, ctx.device)}
            keep = _write_checkpoint(ctx, state)
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return history


#: the layout of a training checkpoint (a file of another format is not resumed)
CHECKPOINT_FORMAT = 1
_CHECKPOINT_KEYS = ("format", "key", "epoch", "epochs", "net", "optimiser", "schedule", "best_loss", "best_state",
                    "history", "elapsed", "rng")


def _rng_states(data: TrainingData, device: torch.device) -> dict[str, torch.Tensor]:
    """The random states a resumed training needs: the data's generator, torch's CPU one, the device's CUDA one."""
    states = {"data": data.rng_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _write_checkpoint(ctx: FitContext, state: dict[str, Any]) -> bool:
    """Write ``state`` to ``ctx.checkpoint`` atomically (a temp file beside it, then a rename); False, with a
    warning, when it cannot be written (training goes on without checkpoints)."""
    try:
        with atomic_output(Path(ctx.checkpoint)) as handle:
            torch.save(state, handle)
    except Exception as exc:  # noqa: BLE001 — a full disk, a folder in the way: the training itself goes on
        ctx.logger.warning("cannot write the checkpoint %s (%s: %s): training goes on without checkpoints",
                           ctx.checkpoint, type(exc).__name__, exc)
        return False
    return True


def _ignored(ctx: FitContext, why: str) -> None:
    text = f"checkpoint {ctx.checkpoint} ignored ({why}): training starts at epoch 1"
    ctx.logger.warning("%s", text)
    ctx.progress({"notice": text})


def _read_checkpoint(ctx: FitContext) -> dict[str, Any] | None:
    """The checkpoint at ``ctx.checkpoint`` if it is one of this training (its key, an epoch of the budget);
    None if there is none, or, with a warning, if it cannot be read or is another's."""
    path = Path(ctx.checkpoint)
    if not path.exists() and not path.is_symlink():
        return None
    try:
        if not path.is_file():  # a folder, or a pipe whose read would block
            raise ValueError("not a regular file")
        with warnings.catch_warnings():  # a garbage file makes the unpickler warn before it fails: said below
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only
        if not isinstance(state, dict) or any(k not in state for k in _CHECKPOINT_KEYS):
            raise ValueError("not a training checkpoint")
        if state["format"] != CHECKPOINT_FORMAT:
            raise ValueError(f"format {state['format']!r}, expected {CHECKPOINT_FORMAT}")
    except Exception as exc:  # noqa: BLE001 — a damaged or truncated file, whatever the reader raises
        _ignored(ctx, f"cannot be read: {type(exc).__name__}: {str(exc).strip()[:200]}")
        return None
    if state["key"] != ctx.checkpoint_key:
        _ignored(ctx, "made by other code, data or settings: its key differs")
        return None
    epoch, epochs = state["epoch"], ctx.budget.epochs
    if not (isinstance(epoch, int) and 1 <= epoch <= epochs and state["epochs"] == epochs):
        _ignored(ctx, f"epoch {epoch!r} is not one of this training's {epochs}")
        return None
    return state


def _restore(state: dict[str, Any], net: nn.Module, optimiser: torch.optim.Optimizer,
             schedule: torch.optim.lr_scheduler.LRScheduler | None, data: TrainingData, ctx: FitContext) -> bool:
    """Load a checkpoint's network, optimiser, schedule and random states; on any mismatch put back what was
    there, warn, and return False (training then starts at epoch 1)."""
    before = ({k: v.detach().clone() for k, v in net.state_dict().items()}, copy.deepcopy(optimiser.state_dict()),
              None if schedule is None else schedule.state_dict(), _rng_states(data, ctx.device))
    try:
        history, best = state["history"], state["best_state"]
        if not (isinstance(history, list) and len(history) == state["epoch"]
                and all(isinstance(r, dict) for r in history)):
            raise ValueError("its history does not match its epoch")
        if best is not None and (not isinstance(best, dict) or set(best) != set(net.state_dict())
                                 or not all(isinstance(v, torch.Tensor) for v in best.values())):
            raise ValueError("its best weights are not this network's")
        float(state["best_loss"]), float(state["elapsed"])
        if (schedule is None) != (state["schedule"] is None):
            raise ValueError("its learning-rate schedule does not match")
        net.load_state_dict(state["net"], strict=True)
        optimiser.load_state_dict(state["optimiser"])
        if schedule is not None:
            schedule.load_state_dict(state["schedule"])
        rng = state["rng"]
        data.set_rng_state(rng["data"])
        torch.set_rng_state(rng["torch"].cpu())
        if ctx.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"].cpu(), ctx.device)
    except Exception as exc:  # noqa: BLE001 — a file of the right key but the wrong shape: not trusted in part
        weights, optimiser_state, schedule_state, rng = before
        net.load_state_dict(weights)
        optimiser.load_state_dict(optimiser_state)
        if schedule is not None:
            schedule.load_state_dict(schedule_state)
        data.set_rng_state(rng["data"])
        torch.set_rng_state(rng["torch"])
        if ctx.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], ctx.device)
        _ignored(ctx, f"does not fit this training: {type(exc).__name__}: {str(exc).strip()[:200]}")
        return False
    return True
