"""The shared torch training loop and the base class of every learned method.

Adam, Huber loss (δ = 1) per source, fixed-order or permutation-invariant (PIT), batches from
:class:`datasets.mixtures.TrainingData`, validation each epoch, the best weights kept.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.api import FitContext, Method, Param, Requirements, Resources, TrainBudget
from datasets.mixtures import Batch, TrainingData

LOSS_MODES = ("fixed", "pit")


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def pairwise_huber(est: torch.Tensor, ref: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Huber loss (mean over pixels) of every output against every source: ``(N, S_out, S_ref)``."""
    n, s_out, s_ref = est.shape[0], est.shape[1], ref.shape[1]
    est_all = est.unsqueeze(2).expand(n, s_out, s_ref, *est.shape[2:]).float()
    ref_all = ref.unsqueeze(1).expand(n, s_out, s_ref, *ref.shape[2:]).float()
    return F.huber_loss(est_all, ref_all, reduction="none", delta=delta).flatten(3).mean(-1)


def separation_loss(est: torch.Tensor, ref: torch.Tensor, mode: str = "fixed") -> torch.Tensor:
    """Σ_s Huber(x̂_s, x_s), averaged over the batch; ``pit`` takes per mixture the best output order."""
    pair = pairwise_huber(est, ref)
    n_sources = pair.shape[-1]
    if mode == "fixed":
        return pair.diagonal(dim1=1, dim2=2).sum(-1).mean()
    if mode != "pit":
        raise ValueError(f"unknown loss mode {mode!r}")
    sources = torch.arange(n_sources, device=pair.device)
    per_perm = [pair[:, list(perm), sources].sum(-1) for perm in itertools.permutations(range(n_sources))]
    return torch.stack(per_perm, dim=1).min(dim=1).values.mean()


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``precision`` is 'bf16', a no-op otherwise."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def evaluate(net: nn.Module, batch: Batch, loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
             chunk: int = 1024) -> float:
    """Mean loss of ``net`` over a fixed batch, in eval mode and without gradients."""
    net.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(batch.y), chunk):
            part = Batch(*(t[start:start + chunk] for t in batch))
            total += float(loss_fn(net, part)) * len(part.y)
            count += len(part.y)
    return total / max(count, 1)


def train_network(net: nn.Module, data: TrainingData, ctx: FitContext,
                  loss_fn: Callable[[nn.Module, Batch], torch.Tensor]) -> list[dict[str, float]]:
    """Train ``net`` on ``data`` within ``ctx.budget``; keep the weights of the best validation epoch."""
    budget: TrainBudget = ctx.budget
    optimiser = torch.optim.Adam(net.parameters(), lr=budget.lr)
    history: list[dict[str, float]] = []
    best_loss, best_state = math.inf, None
    steps_per_epoch = math.ceil(len(data) / budget.batch_size)
    for epoch in range(1, budget.epochs + 1):
        net.train()
        started = time.perf_counter()
        running = torch.zeros((), device=ctx.device)
        for step, batch in enumerate(data.epoch(budget.batch_size), start=1):
            optimiser.zero_grad(set_to_none=True)
            with autocast(ctx.device, budget.precision):
                loss = loss_fn(net, batch)
            loss.backward()
            optimiser.step()
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
        val_loss = evaluate(net, data.validation, loss_fn)
        record = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                  "seconds": time.perf_counter() - started}
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


class TorchMethod(Method):
    """A learned method: a network built per task, trained by :func:`train_network`, run in eval mode."""

    requires: ClassVar[Requirements] = Requirements(needs_training=True)
    resources: ClassVar[Resources] = Resources(cpu=1, gpu=0.5)
    parameters: ClassVar[dict[str, Param]] = {
        "loss": Param("fixed", str, choices=LOSS_MODES, help="fixed-order targets or permutation-invariant"),
    }

    def __init__(self, task: Any, **params: Any) -> None:
        super().__init__(task, **params)
        self.net: nn.Module = self.build_network()
        self.history_: list[dict[str, float]] = []

    def build_network(self) -> nn.Module:
        """The network for ``self.task`` (observations in, sources out)."""
        raise NotImplementedError

    def training_loss(self, net: nn.Module, batch: Batch) -> torch.Tensor:
        """Loss of one batch; the default compares the network's outputs with the sources."""
        return separation_loss(net(batch.y), batch.x, self.params["loss"])

    def predict(self, net: nn.Module, y: torch.Tensor) -> torch.Tensor:
        """Estimates for observations ``y`` in eval mode (the default: the network's output)."""
        return net(y)

    def fit(self, data: TrainingData, ctx: FitContext) -> TorchMethod:
        self.device = ctx.device
        torch.manual_seed(ctx.seed)
        self.net = self.build_network().to(ctx.device)
        self.history_ = train_network(self.net, data, ctx, self.training_loss)
        return self

    def separate(self, y: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        self.net.eval()
        outputs = []
        with torch.no_grad():
            for start in range(0, len(y), chunk):
                outputs.append(self.predict(self.net, y[start:start + chunk].to(self.device)).float())
        return torch.cat(outputs)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())
