"""``ligt-spatial``: an earlier sepbench network built from the paper's description of LiGT (Fig. 3), not from
its public code (for that, see ``ligt``): compressor → transformer encoder/decoder → expander, y → (x̂1, x̂2).

Loss (4): Huber(x̂1, x1) + Huber(x̂2, x2), δ = 1, fixed-order or PIT. Architecture (defaults; K observations,
c = ``channels`` = 48, d = ``width`` = 288, every conv but the last followed by BatchNorm and ReLU):

    compressor: convT4×4/2 K→c/2 (14²→28²) · conv3×3/2 c/2→c (→14²) · conv3×3/2 c→c (→7²) · conv2×2 c→8 (→6²)
    tokens:     the 36 positions of the 8×6×6 map, each a token of 8 features → linear 8→d, plus a learned
                positional embedding (36×d). Attention runs over the 36 positions of ONE image, never across
                the batch, so an output depends on its own input only (unlike the paper's public code).
    transformer: one encoder layer and one decoder layer (d = 288, 8 heads, feed-forward 1024, post-norm);
                the decoder's target is the encoder's input (the embedded tokens), its memory the encoder's
                output, so it cross-attends from the image's own features to their encoded context
    expander:   linear d→8 per token (back to 8×6×6) · convT2×2 8→c (→7²) · convT4×4/2 c→c (→14²)
                · convT4×4/2 c→c/2 (→28²) · conv3×3 c/2→S · sigmoid

Even-split prior (``prior: true``, the default; not in the paper, no parameters): the expander's logits are
added to the logit of ``e = Σ_k up(y_k) / Σ W`` (the observations upsampled to 28×28 by repetition), the
per-pixel estimate of each source if the sources were equal, before the sigmoid. The network starts at the
average baseline and learns corrections. With a bare sigmoid LiGT stays in an "all black" phase for its
first few thousand mixtures (1,000 mixtures, σ = 0.01: test MSE 0.134, SSIM 0.00; with the prior 0.042 /
0.50), and the prior also ends lower (PIT, 8,000 mixtures: 0.029 against 0.033). ``prior: false`` gives the
paper's bare sigmoid head.

Count for K = 1: compressor 33,408 + tokens 2,592 + 10,368 + encoder layer 925,216 + decoder layer
1,258,720 + 2,312 + expander 57,626 = 2,290,242 vs the paper's 2,301,865 (−0.50 %).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sepbench.api import Param, Requirements, Resources, Task, register_method
from sepbench.errors import ParameterError
from sepbench.methods.estimates import even_split_logit
from sepbench.methods.losses import LOSS_MODES
from sepbench.methods.torch_method import TorchMethod

GRID = 6  # the compressed map is 8 × GRID × GRID
FEATURES = 8


def _bn_relu(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels), nn.ReLU()]


def compressor(n_obs: int, channels: int) -> nn.Sequential:
    """``(N, K, 14, 14)`` → ``(N, 8, 6, 6)``: up to 28×28, then strided convolutions down to 6×6."""
    half = channels // 2
    return nn.Sequential(
        *_bn_relu(nn.ConvTranspose2d(n_obs, half, 4, stride=2, padding=1), half),
        *_bn_relu(nn.Conv2d(half, channels, 3, stride=2, padding=1), channels),
        *_bn_relu(nn.Conv2d(channels, channels, 3, stride=2, padding=1), channels),
        *_bn_relu(nn.Conv2d(channels, FEATURES, 2), FEATURES),
    )


def expander(n_sources: int, channels: int, squash: bool = True) -> nn.Sequential:
    """``(N, 8, 6, 6)`` → ``(N, S, 28, 28)`` by transposed convolutions: in [0, 1], or logits if not ``squash``."""
    half = channels // 2
    return nn.Sequential(
        *_bn_relu(nn.ConvTranspose2d(FEATURES, channels, 2), channels),
        *_bn_relu(nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1), channels),
        *_bn_relu(nn.ConvTranspose2d(channels, half, 4, stride=2, padding=1), half),
        nn.Conv2d(half, n_sources, 3, padding=1),
        *([nn.Sigmoid()] if squash else []),
    )


class Transformer(nn.Module):
    """One encoder and one decoder layer; the decoder's target is the encoder's input."""

    def __init__(self, width: int, heads: int, ff: int, dropout: float) -> None:
        super().__init__()
        self.encoder = nn.TransformerEncoderLayer(width, heads, ff, dropout, batch_first=True)
        self.decoder = nn.TransformerDecoderLayer(width, heads, ff, dropout, batch_first=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(tokens, self.encoder(tokens))


class LiGTNet(nn.Module):
    """Compressor, 36 spatial tokens per image, transformer, expander."""

    def __init__(self, n_obs: int, n_sources: int, channels: int, width: int, heads: int, ff: int,
                 dropout: float, total_weight: float | None = None) -> None:
        super().__init__()
        self.total_weight = total_weight  # None: the paper's bare sigmoid; else the even-split prior's Σ W
        self.compressor = compressor(n_obs, channels)
        self.embed = nn.Linear(FEATURES, width)
        self.position = nn.Parameter(0.02 * torch.randn(GRID * GRID, width))
        self.transformer = Transformer(width, heads, ff, dropout)
        self.unembed = nn.Linear(width, FEATURES)
        self.expander = expander(n_sources, channels, squash=total_weight is None)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        features = self.compressor(y)                                      # (N, 8, 6, 6)
        tokens = self.embed(features.flatten(2).transpose(1, 2)) + self.position  # (N, 36, width)
        out = self.unembed(self.transformer(tokens))                       # (N, 36, 8)
        out = self.expander(out.transpose(1, 2).reshape(features.shape))
        if self.total_weight is None:
            return out
        up = F.interpolate(y, size=out.shape[-2:], mode="nearest")  # the observations, repeated to 28×28
        return torch.sigmoid(out + even_split_logit(up, self.total_weight))


_COMMON: dict[str, Param] = {
    "loss": Param("fixed", str, choices=LOSS_MODES, help="fixed-order targets or permutation-invariant"),
    "channels": Param(48, int, positive=True, help="channels of the compressor and expander convolutions"),
    "heads": Param(8, int, positive=True, help="attention heads (must divide the model width)"),
    "ff": Param(1024, int, positive=True, help="feed-forward width of each transformer layer"),
    "dropout": Param(0.1, float, help="dropout inside the transformer layers (training only)"),
}


@register_method("ligt-spatial")
class LiGTSpatial(TorchMethod):
    """An earlier sepbench network after LiGT's description (not the public code's layers): attention over the
    36 positions of one image's compressed map, and the even-split prior."""

    parameters: ClassVar[dict[str, Param]] = {
        **_COMMON,
        "width": Param(288, int, positive=True, help="transformer model width (token size)"),
        "prior": Param(True, bool, help="add the even-split logit before the output sigmoid (false: the paper's)"),
    }
    resources: ClassVar[Resources] = Resources(cpu=1, gpu=0.5)
    # sized for the paper's setting
    requires: ClassVar[Requirements] = Requirements(needs_training=True, observation_shape=(14, 14))
    cpu_mixtures_per_s = 46.0  # estimates from measured rates (docs/performance.md, "Rates behind the code")
    cpu_bf16_speedup = 1.6

    @classmethod
    def check_params(cls, params: Mapping[str, Any], task: Task) -> None:
        """Constraints between parameters that a single :class:`Param` cannot express."""
        if params["width"] % params["heads"]:
            raise ParameterError(f"method {cls.name!r}: heads={params['heads']} must divide the model width "
                                 f"{params['width']}")
        if params["channels"] < 2:
            raise ParameterError(f"method {cls.name!r}: parameter 'channels' must be >= 2, got {params['channels']}")
        if not 0 <= params["dropout"] < 1:
            raise ParameterError(f"method {cls.name!r}: parameter 'dropout' must be in [0, 1), got {params['dropout']}")

    def build_network(self) -> nn.Module:
        p = self.params
        return LiGTNet(self.task.n_observations, self.task.n_sources, p["channels"], p["width"], p["heads"],
                       p["ff"], p["dropout"], float(self.task.weight_matrix().sum()) if p["prior"] else None)
