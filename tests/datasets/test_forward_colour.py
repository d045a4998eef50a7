"""The forward model on colour sources: a blind random blur kernel is one per source and mixture, shared by the
source's channels; Poisson and Gaussian noise stay independent per pixel and channel."""

from __future__ import annotations

import torch

from sepbench.datasets.forward import convolve, random_kernels
from sepbench.datasets.mixtures import mix
from tests.methods.conftest import stroke_images

WEIGHTS = torch.tensor([[1.0, 1.0], [0.7, 0.3]])
RANDOM_BLUR = {"blur": "random", "blur_size": 5}


def _colour(n: int, same: bool = False) -> torch.Tensor:
    """``(n, 3, 16, 16)`` images: a stroke image per channel, or the same one in all three."""
    if same:
        return stroke_images(n, seed=4, size=16)[:, None].expand(-1, 3, -1, -1).contiguous()
    return stroke_images(3 * n, seed=4, size=16).reshape(n, 3, 16, 16)


def _pairs(n_images: int, n: int) -> torch.Tensor:
    return torch.stack([torch.arange(n), (torch.arange(n) + 1) % n_images], dim=1)


def test_the_random_kernel_is_shared_by_a_sources_channels() -> None:
    images = _colour(10, same=True)
    batch = mix(images, _pairs(10, 6), WEIGHTS, 2, 0.0, torch.Generator().manual_seed(1), **RANDOM_BLUR)
    assert batch.y.shape == (6, 2, 3, 8, 8) and batch.z.shape == (6, 2, 3, 16, 16)
    for c in (1, 2):  # the same image in every channel, blurred alike: every channel the same observation
        torch.testing.assert_close(batch.z[:, :, c], batch.z[:, :, 0], rtol=0, atol=0)
        torch.testing.assert_close(batch.y[:, :, c], batch.y[:, :, 0], rtol=0, atol=0)
    clean = torch.einsum("ks,nshw->nkhw", WEIGHTS, batch.x[:, :, 0])
    assert (batch.z[:, :, 0] - clean).abs().max() > 0.05  # and it is blurred


def test_the_blur_equals_one_kernel_per_source_applied_to_each_channel() -> None:
    images = _colour(10)
    pairs = _pairs(10, 6)
    batch = mix(images, pairs, WEIGHTS, 2, 0.0, torch.Generator().manual_seed(2), **RANDOM_BLUR)
    kernels = random_kernels(6 * 2, 5, torch.Generator().manual_seed(2)).reshape(6, 2, 5, 5)  # drawn first
    x = images[pairs]                                                                      # (6, 2, 3, 16, 16)
    for n in range(6):
        blurred = torch.stack([convolve(x[n, s], kernels[n, s]) for s in range(2)])        # (2, 3, 16, 16)
        torch.testing.assert_close(batch.z[n], torch.einsum("ks,schw->kchw", WEIGHTS, blurred))
    # the kernels differ between sources and mixtures
    assert not torch.allclose(kernels[0, 0], kernels[0, 1]) and not torch.allclose(kernels[0, 0], kernels[1, 0])


def test_noise_stays_independent_per_channel() -> None:
    images = _colour(10, same=True)
    for noise in ({"noise": "gaussian"}, {"noise": "poisson-gaussian", "photons": 50.0}):
        batch = mix(images, _pairs(10, 6), WEIGHTS, 2, 0.01, torch.Generator().manual_seed(3), **RANDOM_BLUR,
                    **noise)
        torch.testing.assert_close(batch.z[:, :, 1], batch.z[:, :, 0], rtol=0, atol=0)  # the same clean light
        diff = batch.y[:, :, 1] - batch.y[:, :, 0]
        assert (diff != 0).float().mean() > 0.99  # but a noise draw of its own in every pixel and channel
