"""``convsep-res``: an earlier sepbench network built from the paper's description of ConvSep (Fig. 2), not
from its public code (for that, see ``convsep``): encoder E and decoder D rebuild the clean 28×28 superposition ẑ,
two convolutional separators S1, S2 split a superposition into x̂1 and x̂2.

Training feeds the separators the true superposition z (Fig. 2b); testing feeds them ẑ (Fig. 2c).
Loss (3): Huber(ẑ, z) + Huber(x̂1, x1) + Huber(x̂2, x2), δ = 1 (the source terms fixed-order or PIT).

Architecture (defaults; K observations, C = ``width`` = 84, c = ``sep_width`` = 52, ReLU between layers):

    E: conv3×3 K→C @14² · res. block C @14² · conv3×3/2 C→2C @7² · 2 res. blocks 2C @7²
    D: 2 res. blocks 2C @7² · convT4×4/2 2C→C @14², plus E's 14² features · res. block C @14²
       · upsampling head: convT4×4/2 C→C/2 @28² · conv3×3 C/2→K, added to y upsampled bilinearly = ẑ
       (linear: z spans [0, Σ weights])
    S1, S2 each, @28²: conv3×3 K→c · 3 conv3×3 c→c, dilations 2, 4, 8 (a 33×33 field of view, so a
       separator sees the whole digit pair) · conv3×3 c→1 · sigmoid
    (res. block = two conv3×3 with the input added back.)

Count for K = 1: E 840 + 127,176 + 127,176 + 1,016,736 = 1,271,928; D 1,016,736 + 225,876 + 127,176
+ 56,490 + 379 = 1,426,657; S 2 × 74,153 = 148,306; total 2,846,891 vs the paper's 2,846,224 (+0.02 %).
Most weights sit at 7×7, where they cost least to run.

Two additions to the paper's description, neither with parameters: D predicts the correction to the
bilinear upsampling of y (a global residual, as in super-resolution networks), and each separator's logits
are added to the logit of the even split before the sigmoid. Both make the untrained network start from the
classical estimates (ẑ ≈ up(y), x̂ ≈ ẑ / 2) instead of from black images. Without the residual, D learned ẑ
too slowly for small budgets: on two detectors after 1,000 mixtures ẑ reached 0.16 where z reaches 1 and the
test MSE was 0.106 (black: 0.116); with it 0.030. Without the even-split prior the separators collapsed to
black outputs (MSE 0.113) even on the paper's budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sepbench.api import Param, Requirements, Resources, Task, register_method
from sepbench.datasets.forward import upsample
from sepbench.datasets.mixtures import Batch
from sepbench.errors import ParameterError
from sepbench.methods.estimates import even_split_logit
from sepbench.methods.losses import LOSS_MODES, separation_loss
from sepbench.methods.torch_method import TorchMethod


class ResBlock(nn.Module):
    """Two 3×3 convolutions with a ReLU between, added to the input: ``relu(x + conv(relu(conv(x))))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class Encoder(nn.Module):
    """E: the noisy observation ``(N, K, 14, 14)`` → features at 14×14 (C) and at 7×7 (2C)."""

    def __init__(self, n_obs: int, width: int, blocks: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(n_obs, width, 3, padding=1), nn.ReLU(), ResBlock(width))
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
                                  *[ResBlock(2 * width) for _ in range(blocks)])

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fine = self.stem(y)
        return fine, self.down(fine)


class Decoder(nn.Module):
    """D: encoder features → the clean superposition ẑ ``(N, K, 28, 28)`` through an upsampling head."""

    def __init__(self, n_obs: int, width: int, blocks: int) -> None:
        super().__init__()
        self.coarse = nn.Sequential(*[ResBlock(2 * width) for _ in range(blocks)])
        self.up = nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1)
        self.fine = ResBlock(width)
        self.head = nn.Sequential(nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(width // 2, n_obs, 3, padding=1))

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        up = self.up(self.coarse(coarse))
        return self.head(self.fine(F.relu(up + fine)))


def separator(n_obs: int, width: int, depth: int) -> nn.Sequential:
    """S_i: a 28×28 superposition (K channels) → one source's logits; ``depth`` dilated c→c convolutions."""
    layers: list[nn.Module] = [nn.Conv2d(n_obs, width, 3, padding=1), nn.ReLU()]
    for i in range(depth):
        dilation = 2 ** min(i + 1, 3)
        layers += [nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation), nn.ReLU()]
    layers.append(nn.Conv2d(width, 1, 3, padding=1))
    return nn.Sequential(*layers)


class ConvSepNet(nn.Module):
    """E, D and S separators; ``forward`` is the test-time path y → ẑ → (x̂1, …, x̂S)."""

    def __init__(self, n_obs: int, n_sources: int, width: int, blocks: int, sep_width: int,
                 sep_depth: int, total_weight: float = 2.0, factor: int = 2) -> None:
        super().__init__()
        self.total_weight = total_weight
        self.factor = factor  # the scenario's downsampling factor: y is 1/factor of z's size
        self.encoder = Encoder(n_obs, width, blocks)
        self.decoder = Decoder(n_obs, width, blocks)
        self.separators = nn.ModuleList([separator(n_obs, sep_width, sep_depth) for _ in range(n_sources)])

    def reconstruct(self, y: torch.Tensor) -> torch.Tensor:
        """ẑ = up(y) + D(E(y)): the denoised, upsampled superposition(s); D learns the correction to the
        bilinear upsampling of the observation."""
        return upsample(y, self.factor) + self.decoder(*self.encoder(y))

    def split(self, z: torch.Tensor) -> torch.Tensor:
        """The separators applied to a superposition ``z (N, K, 28, 28)`` → ``(N, S, 28, 28)``.

        Each separator's logits are added to the logit of the even split ``Σ_k z_k / Σ W`` and squashed by a
        sigmoid: the net starts at the average baseline and learns corrections. (With a bare sigmoid head,
        the separators collapsed to all-black outputs within the first few hundred steps: MSE 0.113.)
        """
        prior = even_split_logit(z, self.total_weight)
        return torch.sigmoid(torch.cat([sep(z) for sep in self.separators], dim=1) + prior)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.split(self.reconstruct(y))


@register_method("convsep-res")
class ConvSepRes(TorchMethod):
    """ConvSep's idea in an earlier sepbench network (not the public code's layers): residual blocks, a U-Net
    skip, a residual decoder and the even-split prior."""

    parameters: ClassVar[dict[str, Param]] = {
        "loss": Param("fixed", str, choices=LOSS_MODES, help="fixed-order targets or permutation-invariant"),
        "width": Param(84, int, positive=True, help="channels at 14×14 (twice that at 7×7)"),
        "blocks": Param(2, int, positive=True, help="residual blocks at 7×7 in each of E and D"),
        "sep_width": Param(52, int, positive=True, help="channels of each separator"),
        "sep_depth": Param(3, int, positive=True, help="hidden (dilated) convolutions of each separator"),
    }
    resources: ClassVar[Resources] = Resources(cpu=1, gpu=0.5)
    # sized for the paper's setting
    requires: ClassVar[Requirements] = Requirements(needs_training=True, observation_shape=(14, 14))
    cpu_mixtures_per_s = 17.0  # estimates from measured rates (docs/performance.md, "Rates behind the code")
    cpu_bf16_speedup = 1.9
    channels_last = True  # NHWC convolutions train faster on a CPU (docs/performance.md, "Rates behind the code")

    @classmethod
    def check_params(cls, params: Mapping[str, Any], task: Task) -> None:
        if params["width"] < 2:
            raise ParameterError(f"method {cls.name!r}: parameter 'width' must be >= 2, got {params['width']}")

    def build_network(self) -> nn.Module:
        p = self.params
        return ConvSepNet(self.task.n_observations, self.task.n_sources, p["width"], p["blocks"],
                          p["sep_width"], p["sep_depth"], float(self.task.weight_matrix().sum()), self.task.downsample)

    def training_loss(self, net: nn.Module, batch: Batch) -> torch.Tensor:
        """Loss (3). In training the separators see the true z (Fig. 2b); in evaluation (validation) they
        see ẑ, so the validation loss that picks the kept weights measures the test-time path."""
        z_hat = net.reconstruct(batch.y)
        x_hat = net.split(batch.z if net.training else z_hat)
        z_term = F.huber_loss(z_hat.float(), batch.z.float(), delta=1.0)
        return z_term + separation_loss(x_hat, batch.x, self.params["loss"])
