"""The separation loss of the learned methods: Huber (δ = 1) per source, fixed-order or permutation-invariant.

PIT uses the same pairwise-matrix search as the scorer (:mod:`sepbench.pit`), here over Huber losses.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from sepbench import pit

LOSS_MODES = ("fixed", "pit")


def pairwise_huber(est: torch.Tensor, ref: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Huber loss (mean over pixels) of every output against every source: ``(N, S_out, S_ref)``."""
    huber = functools.partial(F.huber_loss, reduction="none", delta=delta)
    return pit.pairwise_cost(est.float(), ref.float(), huber)


def separation_loss(est: torch.Tensor, ref: torch.Tensor, mode: str = "fixed") -> torch.Tensor:
    """Σ_s Huber(x̂_s, x_s), averaged over the batch; ``pit`` takes per mixture the best output order."""
    pair = pairwise_huber(est, ref)
    if mode == "fixed":
        return pair.diagonal(dim1=1, dim2=2).sum(-1).mean()
    if mode != "pit":
        raise ValueError(f"unknown loss mode {mode!r}")
    return pit.min_permutation_cost(pair).mean()
