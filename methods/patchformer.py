"""Patchformer, an attention reference separator whose tokens are the patches of one image (ViT / SepFormer style).

Follows the Vision Transformer (Dosovitskiy et al. 2021: non-overlapping patches as tokens, learned positional
embeddings, pre-norm encoder layers) with a convolutional stem before the patch embedding (Xiao et al. 2021,
"Early convolutions help transformers see better") and a long skip from that stem to a convolutional output
head, as separation transformers keep an encoder's features to mask or refine (SepFormer, Subakan et al. 2021).
Unlike the paper's LiGT, attention runs over the patches of ONE image: never across the batch.

What we chose (defaults; K observations, S sources, p = ``patch`` = 4, d = ``width`` = 192, c = 32):

    input      the K observations upsampled bilinearly to the sources' size (any downsample factor, also 1),
               zero-padded to a multiple of p
    stem       conv3×3 K→c · GroupNorm · SiLU                                       (full resolution)
    tokens     conv p×p / p  c→d: one token per p×p patch (49 for 28×28) + a learned position embedding
    encoder    ``depth`` = 6 pre-norm transformer layers (d, ``heads`` = 6, feed-forward 4d, GELU), LayerNorm
    unpatch    linear d→c·p² per token, folded back to the image (pixel shuffle), cropped, plus the stem's features
    head       GroupNorm · SiLU · conv3×3 c→S, added to the even-split logit (methods/estimates.py) · sigmoid

The conv head lets neighbouring patches agree at their borders; the even-split prior and a zero-initialised
last convolution make the untrained network exactly the ``average`` baseline. Colour (C channels): K·C maps in,
S·C maps out as ``(N, S, C, H, W)``, the even split per channel. Training: PIT by default,
AdamW (weight decay 0.01 on weights) with a linear warm-up over 5 % of the steps and a cosine decay to zero
(``schedule: constant`` gives the paper's Adam at a constant lr); bf16 autocast where it runs natively.

Count for K = 1, S = 2: 2,877,314 parameters at the defaults; a layer costs about 12·d² parameters.
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
from sepbench.methods.unet import groups

STEM = 32  # channels of the convolutional stem and head


class PatchformerNet(nn.Module):
    """Conv stem → patch tokens → transformer encoder over one image's patches → unpatch → conv head."""

    def __init__(self, n_obs: int, n_sources: int, source_shape: tuple[int, int], patch: int, width: int,
                 depth: int, heads: int, dropout: float, total_weight: float, channels: int = 1) -> None:
        super().__init__()
        self.source_shape, self.patch, self.total_weight = source_shape, patch, total_weight
        self.channels = channels  # colour: K·C input maps, S·C output maps
        self.grid = tuple(-(-side // patch) for side in source_shape)  # patches per column and row, rounded up
        self.stem = nn.Sequential(nn.Conv2d(n_obs * channels, STEM, 3, padding=1), nn.GroupNorm(groups(STEM), STEM),
                                  nn.SiLU())
        self.embed = nn.Conv2d(STEM, width, patch, stride=patch)
        self.position = nn.Parameter(0.02 * torch.randn(self.grid[0] * self.grid[1], width))
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(width), enable_nested_tensor=False)
        self.unpatch = nn.Linear(width, STEM * patch * patch)
        self.head = nn.Sequential(nn.GroupNorm(groups(STEM), STEM), nn.SiLU(),
                                  nn.Conv2d(STEM, n_sources * channels, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)  # the untrained network is exactly the even split
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        (h, w), (gh, gw), p = self.source_shape, self.grid, self.patch
        y = as_maps(y)
        up = y if tuple(y.shape[-2:]) == (h, w) else F.interpolate(y, size=(h, w), mode="bilinear",
                                                                    align_corners=False)
        features = self.stem(F.pad(up, (0, gw * p - w, 0, gh * p - h)))       # (N, c, gh·p, gw·p)
        tokens = self.embed(features).flatten(2).transpose(1, 2) + self.position  # (N, gh·gw, d)
        tokens = self.unpatch(self.encoder(tokens))                            # (N, gh·gw, c·p²)
        image = F.pixel_shuffle(tokens.transpose(1, 2).reshape(len(y), -1, gh, gw), p)
        logits = as_sources(self.head(image + features)[..., :h, :w].float(), self.channels)
        return torch.sigmoid(logits + even_split_prior(up.float(), self.total_weight, self.channels))


@register_method("patchformer")
class Patchformer(ScheduledTorchMethod):
    """A ViT over the p×p patches of one image, conv stem and head, PIT, AdamW + cosine: the attention reference."""

    requires: ClassVar[Requirements] = Requirements(needs_training=True, n_sources=SERVED_SOURCES, color=True)

    parameters: ClassVar[dict[str, Param]] = {
        "loss": Param("pit", str, choices=LOSS_MODES, help="permutation-invariant (default) or fixed-order targets"),
        "width": Param(192, int, positive=True, help="token width d (feed-forward 4d)"),
        "depth": Param(6, int, positive=True, help="transformer encoder layers"),
        "heads": Param(6, int, positive=True, help="attention heads (must divide width)"),
        "patch": Param(4, int, positive=True, help="patch side in pixels of the full-resolution image"),
        "dropout": Param(0.0, float, help="dropout inside the transformer layers (training only)"),
        **SCHEDULE_PARAMS,
    }
    #: 8 cells per GPU: where the total training rate stopped rising on an H200 (docs/performance.md)
    resources: ClassVar[Resources] = Resources(cpu=1, gpu=0.125)
    cpu_mixtures_per_s = 22.0  # one thread, batch 64, fp32, defaults (sepbench.perf.rates, at the reference speed)
    cpu_bf16_speedup = 1.35

    @classmethod
    def cpu_rate(cls, params: Mapping[str, Any]) -> float:
        """Seconds per mixture: a fixed part plus, per layer, terms in width and width²; fitted to (width, depth) =
        (64, 2), (128, 2), (64, 6), (192, 6): 151, 92, 98, 22 mixtures/s at the reference speed (4×4 patches)."""
        width, depth = params.get("width", 192), params.get("depth", 6)
        return 1.0 / (5.27e-3 - 6.4e-6 * width + depth * (2.5e-6 * width + 1.77e-7 * width**2))

    @classmethod
    def check_params(cls, params: Mapping[str, Any], task: Task) -> None:
        super().check_params(params, task)
        if params["width"] % params["heads"]:
            raise ParameterError(f"method {cls.name!r}: heads={params['heads']} must divide width={params['width']}")
        if not 0 <= params["dropout"] < 1:
            raise ParameterError(f"method {cls.name!r}: parameter 'dropout' must be in [0, 1), "
                                 f"got {params['dropout']}")

    def build_network(self) -> nn.Module:
        p = self.params
        return PatchformerNet(self.task.n_observations, self.task.n_sources, tuple(self.task.source_shape),
                              p["patch"], p["width"], p["depth"], p["heads"], p["dropout"],
                              float(self.task.weight_matrix().sum()), self.task.channels)
