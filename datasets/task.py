"""The task: what a method is asked to solve. Data (mixtures) and methods both import it from here.

Re-exported as ``sepbench.Task`` (and ``sepbench.api.Task``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sepbench.datasets.mnist import IMAGE_SIZE as MNIST_SIZE


@dataclass(frozen=True)
class Task:
    """What a method is asked to solve: S sources seen through K weighted, pooled, noisy observations.

    ``source_shape`` and ``channels`` come from the scenario's dataset. With one channel, observations are
    ``(N, K, h, w)`` and sources ``(N, S, H, W)``; with C > 1 they are ``(N, K, C, h, w)`` and ``(N, S, C, H, W)``.
    """

    weights: tuple[tuple[float, ...], ...]  # K rows (observations) × S columns (sources)
    downsample: int
    sigma: float
    source_shape: tuple[int, int] = MNIST_SIZE  # (H, W): the scenario's dataset's; MNIST's when not given
    superpose: str = "sum"  # how sources add up at the detector: "sum", or "uint8-wrap" (the public code's)
    # the forward model beyond weights, pooling and σ (sepbench.datasets.forward): the defaults are today's
    noise_model: str = "gaussian"  # or "poisson-gaussian": Poisson counts at `photons` per unit intensity, then σ
    photons: float = 0.0  # photons per unit intensity (poisson-gaussian only)
    blur: str = "none"  # "gaussian": a known PSF of std `blur_width` px; "random": blind `blur_size`² kernels
    blur_width: float = 0.0
    blur_size: int = 0
    channels: int = 1  # C, channels per source image (the dataset's); C > 1 adds a channel axis to every tensor

    @property
    def n_sources(self) -> int:
        """S, the number of sources to recover (columns of ``weights``)."""
        return len(self.weights[0])

    @property
    def n_observations(self) -> int:
        """K, the number of observations (detectors) per mixture (rows of ``weights``)."""
        return len(self.weights)

    @property
    def observation_shape(self) -> tuple[int, int]:
        """``(h, w)`` of one observation: the source shape divided by ``downsample``."""
        return (self.source_shape[0] // self.downsample, self.source_shape[1] // self.downsample)

    def weight_matrix(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The weights as a float32 tensor ``(K, S)`` on ``device``: row k says how much of each source
        observation k sees (``superimpose(x, task.weight_matrix())`` gives the clean superpositions)."""
        return torch.tensor(self.weights, dtype=torch.float32, device=device)
