"""The classical informed baseline: the least-squares inverse of the known, deterministic part of the forward model.

The model is ``y = D(W·B x) + noise`` (:mod:`sepbench.datasets.forward`): weights W (K × S), average pooling D,
and, when the scenario says so, a known Gaussian blur B. ``lsq`` solves, per mixture,

    min_x ‖D W B x − y‖² + λ ‖x − x₀‖²,     x₀ = the even split Σ_k y_k / Σ W (``average``'s estimate),

Tikhonov-regularised toward the even split rather than toward black, so that the directions the data do not
determine (the null space of W when K < S, or of the pooling) take the even split's value.

* Without a known blur it is solved in closed form per pooled pixel with W's SVD, ``u = u₀ + V·diag(s/(s²+λ))·Uᵀ
  (y − W u₀)`` (the minimum-norm solution about u₀ when λ = 0), then upsampled like ``average`` and ``ica``
  (``upsample: bilinear``; ``nearest`` gives the exact minimum-norm full-resolution solution, block copies;
  ``consistent`` the exact full-resolution minimiser with x₀ the bilinearly upsampled even split, whose pooled
  mixture reproduces the data. On the quick grid's 500 test mixtures, MSE single / dual at σ = 0.01: bilinear
  0.0412 / 0.0149, nearest 0.0423 / 0.0167, consistent 0.0386 / 0.0128; at σ = 0.1: 0.0419 / 0.0263,
  0.0439 / 0.0308, 0.0402 / 0.0316 — consistent wins without noise, loses on dual at σ = 0.1, where its
  block-wise corrections carry the noise; ``average``: 0.0412 / 0.0412 and 0.0419 / 0.0427).
  Where K < S, W u₀ = y for K = 1, so the estimate IS the even split (``average``); for K > 1 with a rank-
  deficient W it is the even split corrected only where the observations disagree with it.
* Under a known Gaussian blur (``blur: {psf: gaussian}``) it runs ``iterations`` conjugate-gradient steps on the
  normal equations ``(AᵀA + λI) x = Aᵀy + λ x₀`` at full resolution, A = D W B, from the closed-form estimate.
  A blind random blur is unknown to the method: it is ignored (B = I). The ``uint8-wrap`` superposition is
  treated as a plain sum.

The regularisation weight (never tuned on test data): λ = σ_eff² / v, where v = 1/12 is the variance of a pixel
value uniform on [0, 1] (a prior that knows only the range) and σ_eff² the observation noise variance per pixel:
σ² + ȳ/P under Poisson–Gaussian noise (ȳ: the mean of the mixture's own observations, P: photons per unit
intensity), plus (10⁻³)² under a known blur, which is ill-posed even without noise. With σ = 0, no Poisson noise
and no blur, λ = 0: for K = S, an invertible W and no pooling it recovers the sources exactly. The cell clamps the
estimates to [0, 1]. No training; everything runs on the observations' device. Colour: each channel is solved on
its own (the forward model mixes, pools and blurs channel by channel), with its own shot-noise level ȳ.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F

from sepbench.api import Method, Param, Requirements, register_method
from sepbench.datasets.forward import convolve, downsample, downsample_adjoint, gaussian_kernel, upsample

PRIOR_VARIANCE = 1.0 / 12.0  # a pixel value uniform on [0, 1]
BLUR_NOISE_FLOOR = 1e-3  # σ floor under a known blur (deconvolution is ill-posed even without noise)


def noise_variance(y: torch.Tensor, sigma: float, photons: float, blurred: bool) -> torch.Tensor:
    """σ_eff² per mixture ``(N,)``: read noise, shot noise at the mixture's mean intensity, the blur floor."""
    var = torch.full((len(y),), sigma**2, dtype=y.dtype, device=y.device)
    if photons > 0:
        var = var + y.flatten(1).mean(1).clamp(min=0) / photons
    if blurred:
        var = var + BLUR_NOISE_FLOOR**2
    return var


def regularised_inverse(residual: torch.Tensor, weights: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``V diag(s/(s²+λ)) Uᵀ r = (WᵀW + λI)⁺ Wᵀ r`` per pixel: residuals ``(N, K, h, w)``, weights ``(K, S)``,
    λ ``(N,)`` → ``(N, S, h, w)`` in float64 (W's pseudo-inverse where λ = 0)."""
    u_mat, s, vh = torch.linalg.svd(weights.double(), full_matrices=False)
    keep = s > s.max() * 1e-10
    gain = torch.where(keep[None], s[None] / (s[None].square() + lam.double()[:, None]), torch.zeros_like(s))
    coeff = torch.einsum("kr,nkhw->nrhw", u_mat, residual.double()) * gain[:, :, None, None]  # (N, r, h, w)
    return torch.einsum("rs,nrhw->nshw", vh, coeff)


def pooled_solution(y: torch.Tensor, weights: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Per pooled pixel, ``u = u₀ + (WᵀW + λI)⁺ Wᵀ (y − W u₀)``: observations ``(N, K, h, w)`` → pooled source
    estimates ``(N, S, h, w)``, u₀ the even split."""
    even = y.sum(1, keepdim=True) / weights.sum()                               # u₀, (N, 1, h, w)
    residual = y.double() - weights.sum(1).double()[None, :, None, None] * even.double()  # y − W u₀
    return (even.double() + regularised_inverse(residual, weights, lam)).to(y.dtype)


def consistent_solution(y: torch.Tensor, weights: torch.Tensor, lam: torch.Tensor, factor: int) -> torch.Tensor:
    """The exact minimiser of ``‖D W x − y‖² + λ‖x − x₀‖²`` at full resolution, x₀ the bilinearly upsampled even
    split: ``x₀ + nearest-up((WᵀW + λf²I)⁺ Wᵀ (y − D W x₀))`` (D's row space is the block-constant images)."""
    even = upsample(y.sum(1, keepdim=True) / weights.sum(), factor)             # x₀, (N, 1, H, W)
    residual = y.double() - downsample(weights.sum(1)[None, :, None, None] * even, factor).double()
    correction = regularised_inverse(residual, weights, lam * factor**2).to(y.dtype)
    return even + F.interpolate(correction, scale_factor=factor, mode="nearest")


@register_method("lsq")
class LeastSquares(Method):
    """Least-squares inverse of the known forward model (weights, pooling, a known Gaussian blur), Tikhonov-
    regularised toward the even split with λ = σ_eff²·12, upsampled; where K < S it is about the even split
    (exactly ``average`` for one detector): the data do not determine more."""

    requires: ClassVar[Requirements] = Requirements(n_sources=None, color=True)
    parameters: ClassVar[dict[str, Param]] = {
        "upsample": Param("bilinear", str, choices=("bilinear", "nearest", "consistent"),
                          help="to full size: the pooled solution upsampled bilinearly (as average) or by block "
                               "copies (nearest), or consistent: the exact full-resolution minimiser about the "
                               "bilinear even split (pools back to the data)"),
        "iterations": Param(50, int, positive=True, help="conjugate-gradient steps under a known Gaussian blur"),
    }

    def separate(self, y: torch.Tensor) -> torch.Tensor:
        if y.dim() == 5:  # colour (N, K, C, h, w): each channel an inverse problem of its own (the forward model's)
            n, k, c, h, w = y.shape
            x = self.separate(y.transpose(1, 2).reshape(n * c, k, h, w))
            return x.reshape(n, c, *x.shape[1:]).transpose(1, 2).contiguous()
        task = self.task
        weights = task.weight_matrix(y.device)
        factor = task.downsample
        known_blur = task.blur == "gaussian"
        photons = task.photons if task.noise_model == "poisson-gaussian" else 0.0
        lam = noise_variance(y, task.sigma, photons, known_blur) / PRIOR_VARIANCE
        if self.params["upsample"] == "consistent" and factor > 1:
            x = consistent_solution(y, weights, lam, factor)
        else:
            x = self._upsample(pooled_solution(y, weights, lam), factor)
        if known_blur:
            prior = self._upsample(y.sum(1, keepdim=True) / weights.sum(), factor).expand_as(x)
            x = self._deblur(y, x, prior, weights, lam, gaussian_kernel(task.blur_width, y.dtype, y.device))
        return x.contiguous()

    def _upsample(self, u: torch.Tensor, factor: int) -> torch.Tensor:
        if factor == 1:
            return u
        if self.params["upsample"] == "nearest":
            return F.interpolate(u, scale_factor=factor, mode="nearest")
        return upsample(u, factor)

    def _deblur(self, y: torch.Tensor, x: torch.Tensor, prior: torch.Tensor, weights: torch.Tensor,
                lam: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """Conjugate gradients on ``(AᵀA + λI) x = Aᵀy + λ x₀`` (A = D W B), per mixture, from ``x``."""
        factor = self.task.downsample

        def forward(v: torch.Tensor) -> torch.Tensor:
            return downsample(torch.einsum("ks,nshw->nkhw", weights, convolve(v, kernel)), factor)

        def adjoint(r: torch.Tensor) -> torch.Tensor:  # the Gaussian kernel is symmetric: Bᵀ = B
            return convolve(torch.einsum("ks,nkhw->nshw", weights, downsample_adjoint(r, factor)), kernel)

        lam4 = lam[:, None, None, None]

        def normal(v: torch.Tensor) -> torch.Tensor:
            return adjoint(forward(v)) + lam4 * v

        def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return (a * b).flatten(1).sum(1)[:, None, None, None]

        residual = adjoint(y) + lam4 * prior - normal(x)
        direction = residual.clone()
        rho = dot(residual, residual)
        for _ in range(self.params["iterations"]):
            q = normal(direction)
            denom = dot(direction, q)
            alpha = torch.where(denom > 0, rho / denom.clamp(min=1e-30), torch.zeros_like(rho))
            x = x + alpha * direction
            residual = residual - alpha * q
            rho_next = dot(residual, residual)
            beta = torch.where(rho > 0, rho_next / rho.clamp(min=1e-30), torch.zeros_like(rho))
            direction = residual + beta * direction
            rho = rho_next
        return x

    def save_state(self) -> dict[str, torch.Tensor]:
        """Nothing is learned: the task and the parameters on the model card are the whole kept method."""
        return {}

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        if state:
            raise ValueError(f"{self.name} keeps no state, got tensors {', '.join(sorted(state))}")
