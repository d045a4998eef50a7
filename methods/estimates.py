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


def as_maps(y: torch.Tensor) -> torch.Tensor:
    """Observations as a network's input maps: ``(N, K, C, h, w)`` → ``(N, K·C, h, w)`` (observation-major); one
    channel's ``(N, K, h, w)`` unchanged."""
    return y if y.dim() == 4 else y.reshape(len(y), -1, *y.shape[-2:])


def even_split_prior(maps: torch.Tensor, total_weight: float, channels: int) -> torch.Tensor:
    """The even-split logit per colour channel for superpositions as maps ``(N, K·C, H, W)``: ``(N, 1, H, W)`` for
    one channel (:func:`even_split_logit`), ``(N, 1, C, H, W)`` for C > 1 (never summed across channels)."""
    if channels == 1:
        return even_split_logit(maps, total_weight)
    n, kc, h, w = maps.shape
    return even_split_logit(maps.reshape(n, kc // channels, channels, h, w), total_weight)


def as_sources(maps: torch.Tensor, channels: int) -> torch.Tensor:
    """A network's output maps ``(N, S·C, H, W)`` as sources ``(N, S, C, H, W)``; one channel's unchanged."""
    if channels == 1:
        return maps
    n, sc, h, w = maps.shape
    return maps.reshape(n, sc // channels, channels, h, w)
