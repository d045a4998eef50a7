"""Scores per test mixture and per source, under the best assignment of outputs to sources.

MSE (mean over pixels), PSNR (``-10·log10(MSE)``, data range 1) and SSIM exactly as scikit-image's
``structural_similarity(data_range=1)``. The permutation is chosen per mixture by the lowest summed MSE
(:mod:`sepbench.pit`, the same search the PIT training loss uses: exhaustive over the S! assignments up to S = 4,
SciPy's Hungarian algorithm beyond).

SSIM is computed by the batched torch implementation :func:`sepbench.fast_ssim.ssim_batch` (tests hold it to
scikit-image within 1e-5 on random and real digits; it is far faster); scikit-image stays the reference and
can be asked for with ``score(..., ssim=ssim_skimage)``.

``ssim_gauss`` is the other convention: SSIM with the 11 × 11 Gaussian window (σ = 1.5) of Wang et al. and
population variances, as ``structural_similarity(data_range=1, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)`` computes it (:func:`sepbench.fast_ssim.ssim_gaussian_batch`, equal to it within
1e-15), on the same assignment; NaN for images smaller than 11 × 11.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from skimage.metrics import structural_similarity

from sepbench import pit
from sepbench.fast_ssim import ssim_batch, ssim_gaussian_batch

FIXED_COLUMNS = ("mse_fixed", "psnr_fixed", "ssim_fixed")  # output s against source s (scenarios with `sources:`)
MSE_FLOOR = 1e-10  # PSNR of a perfect estimate is capped at 100 dB instead of infinity


def pairwise_mse(est: torch.Tensor, ref: torch.Tensor, block: int = 128) -> torch.Tensor:
    """MSE of every output against every source: ``(N, S_out, S_ref)``, in float64.

    Computed ``block`` mixtures at a time so the float64 differences stay in cache (same values, ~9× faster
    on 10,000 MNIST mixtures on one CPU thread than one pass over the whole set).
    """
    return pit.pairwise_cost(est.double(), ref.double(), pit.squared_error, block=block)


def ssim_skimage(est: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """SSIM of each image pair ``(N, H, W)`` with scikit-image, the reference implementation."""
    return np.array([structural_similarity(e, r, data_range=1.0) for e, r in zip(est, ref, strict=True)])


def ssim_fast(est: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """SSIM of each image pair ``(N, H, W)`` with the batched torch implementation (equal to scikit-image's)."""
    return ssim_batch(torch.from_numpy(est), torch.from_numpy(ref)).numpy()


def ssim_gaussian(est: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """SSIM with the Gaussian window of Wang et al. of each image pair ``(N, H, W)`` (scikit-image's
    ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``)."""
    return ssim_gaussian_batch(torch.from_numpy(est), torch.from_numpy(ref)).numpy()


def score(est: torch.Tensor, ref: torch.Tensor,
          ssim: Callable[[np.ndarray, np.ndarray], np.ndarray] = ssim_fast, fixed: bool = False,
          ssim_gauss: Callable[[np.ndarray, np.ndarray], np.ndarray] = ssim_gaussian) -> pd.DataFrame:
    """Long-format scores: one row per (mixture, source) with mse, psnr, ssim, ssim_gauss and perm (the output
    used).

    ``ssim`` maps two float64 arrays ``(M, H, W)`` to ``(M,)``: :func:`ssim_fast` or the reference
    :func:`ssim_skimage`. ``fixed``: also ``mse_fixed``, ``psnr_fixed``, ``ssim_fixed``, output s scored against
    source s (``FIXED_COLUMNS``: where each source has its own role, which output was meant for which source);
    equal to the best-assignment values where that assignment is the identity, else never better in summed MSE.
    """
    est, ref = est.detach().cpu(), ref.detach().cpu()
    if est.shape != ref.shape:
        raise ValueError(f"estimates {tuple(est.shape)} and sources {tuple(ref.shape)} differ in shape")
    n, n_sources = est.shape[:2]
    pair = pairwise_mse(est, ref)
    perm = pit.best_permutation(pair)
    chosen = torch.gather(est, 1, perm[:, :, None, None].expand(-1, -1, *est.shape[2:])).double()
    mse = torch.gather(pair, 1, perm[:, None, :]).squeeze(1)
    est_np = chosen.numpy().reshape(n * n_sources, *est.shape[2:])
    ref_np = ref.double().numpy().reshape(n * n_sources, *ref.shape[2:])
    mse_np = mse.numpy().ravel()
    ssim_np = ssim(est_np, ref_np)
    rows = pd.DataFrame({
        "mixture": np.repeat(np.arange(n), n_sources),
        "source": np.tile(np.arange(n_sources), n),
        "mse": mse_np,
        "psnr": -10.0 * np.log10(np.maximum(mse_np, MSE_FLOOR)),
        "ssim": ssim_np,
        "ssim_gauss": ssim_gauss(est_np, ref_np),
        "perm": perm.numpy().ravel(),
    })
    if fixed:
        rows[list(FIXED_COLUMNS)] = _fixed_order(est, ref_np, pair, perm, ssim_np, ssim)
    return rows


def _fixed_order(est: torch.Tensor, ref_np: np.ndarray, pair: torch.Tensor, perm: torch.Tensor,
                 ssim_best: np.ndarray, ssim: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """``(N·S, 3)``: MSE, PSNR and SSIM of output s against source s; SSIM computed only where the best assignment
    is not the identity (elsewhere it is the same pair of images)."""
    mse = pair.diagonal(dim1=1, dim2=2).numpy().ravel()
    moved = (perm != torch.arange(perm.shape[1])).numpy().ravel()
    values = ssim_best.astype(np.float64, copy=True)
    if moved.any():
        own = est.double().numpy().reshape(len(moved), *est.shape[2:])
        values[moved] = ssim(own[moved], ref_np[moved])
    return np.stack([mse, -10.0 * np.log10(np.maximum(mse, MSE_FLOOR)), values], axis=1)
