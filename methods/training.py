"""The shared torch training loop: batches from :class:`sepbench.TrainingData`, validation each epoch.

Adam (the paper's; a method may choose another optimiser and a learning-rate schedule through
``TorchMethod.configure_optimiser``, e.g. :func:`adamw_cosine`); the weights of the best validation epoch are
kept; each epoch's record holds its seconds and the seconds elapsed so far. Training steps run at the resolved
precision (bf16 autocast or fp32, :mod:`sepbench.precision`); validation always runs in fp32, so that the choice
of the best epoch does not depend on the precision.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import nn

from sepbench.api import FitContext, TrainBudget
from sepbench.datasets.mixtures import Batch, TrainingData
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
    for epoch in range(1, budget.epochs + 1):
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
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return history
