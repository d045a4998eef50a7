"""The forward model: superimpose weighted sources, average-pool, add white Gaussian noise."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def superimpose(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sources ``(N, S, H, W)`` and weights ``(K, S)`` → clean superpositions ``(N, K, H, W)``."""
    return torch.einsum("ks,nshw->nkhw", weights.to(x.dtype), x)


def downsample(z: torch.Tensor, factor: int) -> torch.Tensor:
    """``factor``×``factor`` average pooling: each output pixel is the mean of one block."""
    return F.avg_pool2d(z, factor) if factor > 1 else z


def upsample(y: torch.Tensor, factor: int) -> torch.Tensor:
    """Back to full resolution by bilinear interpolation (used by baselines and ICA)."""
    if factor == 1:
        return y
    return F.interpolate(y, scale_factor=factor, mode="bilinear", align_corners=False)


def observe(
    x: torch.Tensor,
    weights: torch.Tensor,
    factor: int,
    sigma: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the forward model to sources ``x``: returns observations ``y`` and superpositions ``z``.

    ``y = D(W·x) + g`` with ``g ~ N(0, σ²)`` drawn from ``generator`` (which must live on ``x``'s device).
    """
    z = superimpose(x, weights)
    y = downsample(z, factor)
    if sigma > 0:
        y = y + sigma * torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
    return y, z
