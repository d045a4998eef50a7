"""U-Net, a modern convolutional reference separator: y → (x̂1, …, x̂S) in one residual encoder–decoder.

Follows the U-Net family (Ronneberger et al. 2015) as diffusion and speech-separation models use it today:
pre-activation residual blocks (GroupNorm → SiLU → conv3×3, twice, added to the input; He et al. 2016, Wu &
He 2018), strided convolutions down, nearest-neighbour upsampling + conv3×3 up (no checkerboard artefacts),
additive skip connections at every resolution. Not the paper's; a strong, plain baseline for it to beat.

What we chose (defaults; K observations, S sources, C = ``width`` = 48):

    input      the K observations upsampled bilinearly to the sources' size (any downsample factor, also 1)
    encoder    conv3×3 K→C · res. block C          @28²  ─ skip ─┐
               conv3×3/2 C→2C · res. block 2C      @14²  ─ skip ─┼┐
               conv3×3/2 2C→4C · ``blocks`` res. blocks 4C @7²   ││  (most weights sit here, where they cost least)
    decoder    up ×2, conv3×3 4C→2C, + skip · res. block 2C @14² ─┘│
               up ×2, conv3×3 2C→C, + skip · res. block C @28² ────┘
    head       GroupNorm · SiLU · conv3×3 C→S, added to the even-split logit (methods/estimates.py) · sigmoid

The even-split prior and a zero-initialised last convolution make the untrained network exactly the
``average`` baseline (ConvSep and LiGT start near it too), so training starts from the classical estimate.
Sizes other than 28×28 work: stride-2 convolutions round up, and each upsampling goes to its skip's exact
size. Colour (C channels): the K·C observation maps go in, S·C maps come out as ``(N, S, C, H, W)``, and the
even split is taken per channel. GroupNorm (up to 8 groups, :func:`groups`) keeps an output independent of its
batch-mates, unlike BatchNorm. Training: PIT by default, AdamW (weight decay 0.01 on weights) with a linear
warm-up over 5 % of the steps and a cosine decay to zero (``schedule: constant`` gives the paper's Adam at a
constant lr); bf16 autocast where the CPU or GPU runs it natively.

Count for K = 1, S = 2: 2,162,450 parameters at ``width`` 48, ``blocks`` 2 (about 940 × width²).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sepbench import Param, Requirements, Resources, Task, register_method
from sepbench.api import SERVED_SOURCES
from sepbench.errors import ParameterError
from sepbench.methods.estimates import as_maps, as_sources, even_split_prior
from sepbench.methods.losses import LOSS_MODES
from sepbench.methods.scheduled import SCHEDULE_PARAMS, ScheduledTorchMethod


def groups(channels: int, most: int = 8) -> int:
    """GroupNorm groups: the largest divisor of ``channels`` up to ``most``."""
    return next(g for g in range(min(most, channels), 0, -1) if channels % g == 0)


class ResBlock(nn.Module):
    """Pre-activation residual block: ``x + conv(SiLU(GN(conv(SiLU(GN(x))))))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(groups(channels), channels), nn.SiLU(),
                                  nn.Conv2d(channels, channels, 3, padding=1),
                                  nn.GroupNorm(groups(channels), channels), nn.SiLU(),
                                  nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Up(nn.Module):
    """Nearest-neighbour upsampling to the skip's size, conv3×3, the skip added, a residual block."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.block = ResBlock(channels_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
        return self.block(self.conv(x) + skip)


class UNet(nn.Module):
    """Three resolutions (full, ½, ¼), additive skips, even-split prior before the output sigmoid."""

    def __init__(self, n_obs: int, n_sources: int, width: int, blocks: int, source_shape: tuple[int, int],
                 total_weight: float, channels: int = 1) -> None:
        super().__init__()
        c = width
        self.source_shape = source_shape
        self.total_weight = total_weight
        self.channels = channels  # colour: K·C input maps, S·C output maps
        self.stem = nn.Sequential(nn.Conv2d(n_obs * channels, c, 3, padding=1), ResBlock(c))
        self.down1 = nn.Sequential(nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), ResBlock(2 * c))
        self.down2 = nn.Sequential(nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1),
                                   *[ResBlock(4 * c) for _ in range(blocks)])
        self.up1 = Up(4 * c, 2 * c)
        self.up2 = Up(2 * c, c)
        self.head = nn.Sequential(nn.GroupNorm(groups(c), c), nn.SiLU(),
                                  nn.Conv2d(c, n_sources * channels, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)  # the untrained network is exactly the even split
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        y = as_maps(y)
        up = y if tuple(y.shape[-2:]) == self.source_shape else \
            F.interpolate(y, size=self.source_shape, mode="bilinear", align_corners=False)
        full = self.stem(up)
        half = self.down1(full)
        x = self.up2(self.up1(self.down2(half), half), full)
        logits = as_sources(self.head(x).float(), self.channels)
        return torch.sigmoid(logits + even_split_prior(up.float(), self.total_weight, self.channels))


@register_method("unet")
class UNetSeparator(ScheduledTorchMethod):
    """A residual U-Net with GroupNorm and skips, PIT, AdamW + cosine: the suite's convolutional reference."""

    requires: ClassVar[Requirements] = Requirements(needs_training=True, n_sources=SERVED_SOURCES, color=True)

    parameters: ClassVar[dict[str, Param]] = {
        "loss": Param("pit", str, choices=LOSS_MODES, help="permutation-invariant (default) or fixed-order targets"),
        "width": Param(48, int, positive=True, help="channels at full resolution (2× at ½, 4× at ¼)"),
        "blocks": Param(2, int, positive=True, help="residual blocks at the coarsest resolution"),
        **SCHEDULE_PARAMS,
    }
    #: 4 cells per GPU: where the total training rate stopped rising on an H200 (docs/performance.md)
    resources: ClassVar[Resources] = Resources(cpu=1, gpu=0.25)
    cpu_mixtures_per_s = 17.0  # one thread, batch 64, fp32, width 48 (sepbench.perf.rates, at the reference speed)
    cpu_bf16_speedup = 1.35
    channels_last = True

    @classmethod
    def cpu_rate(cls, params: Mapping[str, Any]) -> float:
        """Seconds per mixture grow with width² (convolutions) over a fixed part: measured at widths 16, 32, 48
        (115, 40, 17 mixtures/s at the reference speed; sepbench.perf.rates)."""
        width = params.get("width", 48)
        return 1.0 / (2.4e-3 + 2.45e-5 * width**2)

    @classmethod
    def check_params(cls, params: Mapping[str, Any], task: Task) -> None:
        super().check_params(params, task)
        if params["width"] < 2:
            raise ParameterError(f"method {cls.name!r}: parameter 'width' must be >= 2, got {params['width']}")

    def build_network(self) -> nn.Module:
        p = self.params
        return UNet(self.task.n_observations, self.task.n_sources, p["width"], p["blocks"],
                    tuple(self.task.source_shape), float(self.task.weight_matrix().sum()), self.task.channels)
