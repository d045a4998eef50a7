"""The forward model: blur each source (optional), superimpose weighted sources, average-pool, add noise.

Sources superimpose as a plain weighted ``sum`` (the physics), or as ``uint8-wrap``: the paper's public code
adds the 8-bit images as uint8 tensors, so a pixel above 255 wraps around (200 + 100 → 44), and the mixture
it trains and tests on is ``(255·Σ w x mod 256) / 255`` (the targets stay the clean digits).

Noise (scenario data, :class:`sepbench.Task`): ``gaussian`` adds ``N(0, σ²)`` to the pooled image ``D(W·x)``;
``poisson-gaussian`` first draws Poisson counts of ``P·D(W·x)`` at ``P`` photons per unit intensity and divides
them by ``P`` (shot noise: mean ``D(W·x)``, variance ``D(W·x)/P``), then adds the same Gaussian read noise.
Blur (before weighting): a known Gaussian point-spread function of standard deviation ``width`` pixels, or
``random``: a fresh ``size``×``size`` kernel per source and mixture, its entries uniform on [0, 1] normalised
to sum 1 (non-negative, as an optical PSF; Kong et al.'s S-D setting), drawn from the mixture's generator and
never shown to the methods. Both convolve with zero padding and keep the image size.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from sepbench.datasets.task import Task

SUPERPOSE_MODES = ("sum", "uint8-wrap")
NOISE_MODELS = ("gaussian", "poisson-gaussian")
BLUR_PSFS = ("none", "gaussian", "random")


def superimpose(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sources ``(N, S, H, W)`` and weights ``(K, S)`` → clean superpositions ``(N, K, H, W)``."""
    return torch.einsum("ks,nshw->nkhw", weights.to(x.dtype), x)


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


def gaussian_kernel(width: float, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
                    ) -> torch.Tensor:
    """A normalised 2-D Gaussian PSF of standard deviation ``width`` pixels, ``(2r+1, 2r+1)`` with r = ⌈3·width⌉."""
    radius = max(1, math.ceil(3 * width))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-t.square() / (2 * width**2))
    kernel = torch.outer(g, g)
    return (kernel / kernel.sum()).to(dtype=dtype, device=device)


def random_kernels(n: int, size: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
                   ) -> torch.Tensor:
    """``n`` random PSFs ``(n, size, size)`` on the generator's device: uniform on [0, 1], each summing to 1."""
    kernels = torch.rand((n, size, size), generator=generator, device=generator.device, dtype=dtype)
    return kernels / kernels.sum(dim=(-2, -1), keepdim=True)


def convolve(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Images ``(..., H, W)`` convolved ("same" size, zero padding) with one kernel ``(k, k)`` or one kernel per
    image ``(M, k, k)`` (M = the number of images in ``x``); ``k`` odd. A true convolution (the kernel flipped)."""
    shape = x.shape
    images = x.reshape(-1, 1, *shape[-2:])
    k = kernels.shape[-1]
    weight = kernels.flip(-2, -1).to(x.dtype).reshape(-1, 1, k, k)
    if weight.shape[0] == 1:
        out = F.conv2d(images, weight, padding=k // 2)
    else:  # one kernel per image: a grouped convolution over the images as channels
        out = F.conv2d(images.reshape(1, -1, *shape[-2:]), weight, padding=k // 2, groups=weight.shape[0])
    return out.reshape(shape)


def blur_sources(x: torch.Tensor, blur: str, width: float, size: int, generator: torch.Generator
                 ) -> torch.Tensor:
    """Each source of ``x (N, S, H, W)`` or ``(N, S, C, H, W)`` blurred: ``none``, ``gaussian`` (known PSF) or
    ``random`` (a kernel per source and mixture drawn from ``generator``, shared by a source's C channels: one
    optical path blurs every colour alike)."""
    if blur == "none":
        return x
    if blur == "gaussian":
        return convolve(x, gaussian_kernel(width, x.dtype, x.device))
    if blur == "random":
        kernels = random_kernels(math.prod(x.shape[:2]), size, generator, x.dtype)
        if x.dim() == 5:
            kernels = kernels.repeat_interleave(x.shape[2], dim=0)  # (N·S·C, k, k) in x's order
        return convolve(x, kernels)
    raise ValueError(f"unknown blur {blur!r} (expected one of {', '.join(BLUR_PSFS)})")


def add_noise(y: torch.Tensor, sigma: float, generator: torch.Generator, noise: str = "gaussian",
              photons: float = 0.0) -> torch.Tensor:
    """``y`` with noise: Gaussian ``N(0, σ²)``, after Poisson counts of ``photons·y`` divided by ``photons`` under
    ``poisson-gaussian`` (``y`` is clamped at 0 for the rate only)."""
    if noise == "poisson-gaussian":
        if not photons > 0:
            raise ValueError(f"poisson-gaussian noise needs photons > 0, got {photons}")
        y = torch.poisson(y.clamp(min=0) * photons, generator=generator) / photons
    elif noise != "gaussian":
        raise ValueError(f"unknown noise model {noise!r} (expected one of {', '.join(NOISE_MODELS)})")
    if sigma > 0:
        y = y + sigma * torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
    return y


def forward_options(task: Task) -> dict[str, Any]:
    """The task's forward model beyond weights, pooling and σ, as keyword arguments of :func:`observe`."""
    return {"superpose": task.superpose, "noise": task.noise_model, "photons": task.photons, "blur": task.blur,
            "blur_width": task.blur_width, "blur_size": task.blur_size}


def observe(
    x: torch.Tensor,
    weights: torch.Tensor,
    factor: int,
    sigma: float,
    generator: torch.Generator,
    superpose: str = "sum",
    *,
    noise: str = "gaussian",
    photons: float = 0.0,
    blur: str = "none",
    blur_width: float = 0.0,
    blur_size: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the forward model to sources ``x``: returns observations ``y`` and superpositions ``z``.

    ``y = D(W·B(x)) + noise``, all random draws from ``generator`` (which must live on ``x``'s device), in this
    order: random blur kernels, Poisson counts, Gaussian noise (so the default model draws exactly what it always
    drew); under ``superpose='uint8-wrap'`` W·x is wrapped as the public code's uint8 sum before pooling.
    ``z = W·B(x)``, the clean superposition at full resolution.
    """
    if superpose not in SUPERPOSE_MODES:
        raise ValueError(f"unknown superpose {superpose!r} (expected one of {', '.join(SUPERPOSE_MODES)})")
    z = superimpose(blur_sources(x, blur, blur_width, blur_size, generator), weights)
    if superpose == "uint8-wrap":
        z = wrap_uint8(z)
    y = add_noise(downsample(z, factor), sigma, generator, noise, photons)
    return y, z
