"""Scores equal scikit-image's, under the best permutation of outputs to sources."""

import numpy as np
import torch
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from sepbench.metrics import pairwise_mse, score
from sepbench.pit import best_permutation


def _pair(n=20, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ref = torch.rand(n, 2, 28, 28, generator=gen) * (torch.rand(n, 2, 28, 28, generator=gen) > 0.7)
    est = (ref + 0.1 * torch.randn(n, 2, 28, 28, generator=gen)).clamp(0, 1)
    return est, ref


def test_metrics_equal_scikit_image_called_directly():
    est, ref = _pair()
    rows = score(est, ref)
    assert list(rows["perm"][:2]) == [0, 1]
    for _, row in rows.sample(10, random_state=0).iterrows():
        e = est[int(row.mixture), int(row.perm)].double().numpy()
        r = ref[int(row.mixture), int(row.source)].double().numpy()
        np.testing.assert_allclose(row.mse, mean_squared_error(r, e), rtol=1e-12)
        np.testing.assert_allclose(row.psnr, peak_signal_noise_ratio(r, e, data_range=1.0), rtol=1e-12)
        # score() uses the batched torch SSIM: equal to scikit-image's within the DESIGN's 1e-5 (in fact ~1e-15)
        np.testing.assert_allclose(row.ssim, structural_similarity(e, r, data_range=1.0), rtol=0, atol=1e-5)


def test_swapped_outputs_score_exactly_as_unswapped():
    est, ref = _pair()
    swapped = est.flip(1)
    a, b = score(est, ref), score(swapped, ref)
    for column in ("mse", "psnr", "ssim"):
        assert (a[column].to_numpy() == b[column].to_numpy()).all()
    assert (b["perm"].to_numpy() == 1 - a["perm"].to_numpy()).all()


def test_permutation_chosen_per_mixture_by_summed_mse():
    pair = torch.tensor([[[0.1, 0.5], [0.4, 0.3]],     # identity: 0.4, swap: 0.9
                         [[0.5, 0.1], [0.2, 0.9]]],    # identity: 1.4, swap: 0.3
                        dtype=torch.float64)
    assert best_permutation(pair).tolist() == [[0, 1], [1, 0]]


def test_pairwise_mse_shape_and_values():
    est, ref = _pair(3)
    pair = pairwise_mse(est, ref)
    assert pair.shape == (3, 2, 2)
    expected = float(((est[1, 0].double() - ref[1, 1].double()) ** 2).mean())
    assert float(pair[1, 0, 1]) == expected
