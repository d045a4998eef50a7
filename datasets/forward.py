"""The forward model: superimpose weighted sources, average-pool, add white Gaussian noise.

Sources superimpose as a plain weighted ``sum`` (the physics), or as ``uint8-wrap``: the paper's public code
adds the 8-bit images as uint8 tensors, so a pixel above 255 wraps around (200 + 100 → 44), and the mixture
it trains and tests on is ``(255·Σ w x mod 256) / 255`` (the targets stay the clean digits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def superimpose(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sources ``(N, S, H, W)`` and weights ``(K, S)`` → clean superpositions ``(N, K, H, W)``."""
    return torch.einsum("ks,nshw->nkhw", weights.to(x.dtype), x)


SUPERPOSE_MODES = ("sum", "uint8-wrap")


def wrap_uint8(z: torch.Tensor) -> torch.Tensor:
    """A superposition on the [0, 1] scale as the public code's uint8 sum leaves it: 8-bit levels modulo 256."""
    return torch.remainder(torch.round(z * 255), 256) / 255


def downsample(z: torch.Tensor, factor: int) -> torch.Tensor:
    """``factor``×``factor`` average pooling: each output pixel is the mean of one block."""
    return F.avg_pool2d(z, factor) if factor > 1 else z


def downsample_adjoint(y: torch.Tensor, factor: int) -> torch.Tensor:
    """The adjoint Dᵀ of :func:`downsample`: each pixel copied into its ``factor``×``factor`` block, divided by
    ``factor²`` (so that ``<D z, y> = <z, Dᵀ y>``; D Dᵀ is the identity divided by ``factor²``)."""
    if factor == 1:
        return y
    return y.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1) / factor**2


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
    superpose: str = "sum",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the forward model to sources ``x``: returns observations ``y`` and superpositions ``z``.

    ``y = D(W·x) + g`` with ``g ~ N(0, σ²)`` drawn from ``generator`` (which must live on ``x``'s device);
    under ``superpose='uint8-wrap'`` W·x is wrapped as the public code's uint8 sum before pooling.
    """
    z = superimpose(x, weights)
    if superpose == "uint8-wrap":
        z = wrap_uint8(z)
    elif superpose != "sum":
        raise ValueError(f"unknown superpose {superpose!r} (expected one of {', '.join(SUPERPOSE_MODES)})")
    y = downsample(z, factor)
    if sigma > 0:
        y = y + sigma * torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
    return y, z
