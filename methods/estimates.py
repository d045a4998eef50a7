"""Classical estimates that the paper's networks start from, so that an untrained network is not black."""

from __future__ import annotations

import torch


def logit(p: torch.Tensor) -> torch.Tensor:
    """``log(p / (1 − p))`` with ``p`` clamped to [1e-3, 1 − 1e-3] (noise can push an estimate outside [0, 1])."""
    p = p.clamp(1e-3, 1 - 1e-3)
    return torch.log(p) - torch.log1p(-p)


def even_split_logit(superposition: torch.Tensor, total_weight: float) -> torch.Tensor:
    """The logit of ``Σ_k z_k / Σ W`` for a superposition ``(N, K, H, W)``: each source's value if all sources
    were equal, ``(N, 1, H, W)``, clamped to [1e-3, 1 − 1e-3] (noise can push it outside [0, 1])."""
    return logit(superposition.sum(dim=1, keepdim=True) / total_weight)
