"""``score`` with its default (batched torch) SSIM equals ``score`` with scikit-image's, on real MNIST digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sepbench.datasets.mnist import load_mnist
from sepbench.metrics import score, ssim_fast, ssim_skimage

TOL = 1e-5  # the DESIGN's bound for a batched SSIM serving the hot path
N_MIXTURES = 400


@pytest.fixture(scope="module")
def digits_and_estimates() -> tuple[torch.Tensor, torch.Tensor]:
    """Sources: pairs of MNIST test digits. Estimates: the kinds of outputs methods give, in [0, 1].

    Good estimates (noisy copies), half-separated blends of both digits, swapped outputs (so both
    permutations are chosen), the mixture itself in both outputs, blank and constant outputs.
    """
    test = load_mnist().test
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(test), generator=gen)[:2 * N_MIXTURES]
    ref = test[idx].reshape(N_MIXTURES, 2, 28, 28).double()
    noise = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    est = (ref + 0.05 * noise).clamp(0, 1)
    q = N_MIXTURES // 8
    blend = 0.7 * ref + 0.3 * ref.flip(1)
    est[q:2 * q] = (blend[q:2 * q] + 0.1 * noise[q:2 * q]).clamp(0, 1)
    est[2 * q:3 * q] = est[2 * q:3 * q].flip(1)
    est[3 * q:4 * q] = (0.5 * ref[3 * q:4 * q].sum(1, keepdim=True)).expand(-1, 2, -1, -1)
    est[4 * q:4 * q + 5] = 0.0
    est[4 * q + 5:4 * q + 10] = 0.5
    return est.float(), ref.float()


def test_score_fast_equals_score_with_scikit_image_on_every_row(digits_and_estimates) -> None:
    est, ref = digits_and_estimates
    fast = score(est, ref)  # the default
    slow = score(est, ref, ssim=ssim_skimage)
    assert len(fast) == len(slow) == 2 * N_MIXTURES
    for column in ("mixture", "source", "perm", "mse", "psnr"):
        np.testing.assert_array_equal(fast[column].to_numpy(), slow[column].to_numpy())
    assert set(fast["perm"]) == {0, 1}  # both assignments occur
    err = np.abs(fast["ssim"].to_numpy() - slow["ssim"].to_numpy())
    assert err.max() < TOL, f"max |SSIM fast - scikit-image| = {err.max():.3g} (row {err.argmax()})"
    np.testing.assert_array_equal(fast["ssim"].to_numpy(), score(est, ref, ssim=ssim_fast)["ssim"].to_numpy())


def test_score_fast_equals_scikit_image_on_perfect_and_blank_estimates(digits_and_estimates) -> None:
    _, ref = digits_and_estimates
    ref = ref[:20]
    for est in (ref.clone(), torch.zeros_like(ref)):
        fast, slow = score(est, ref), score(est, ref, ssim=ssim_skimage)
        np.testing.assert_allclose(fast["ssim"].to_numpy(), slow["ssim"].to_numpy(), rtol=0, atol=TOL)
