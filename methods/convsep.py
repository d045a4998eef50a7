"""ConvSep, Model I of the paper (Fig. 2), as its public code builds it (GitHub aranganath/Image-disambiguation,
branch ``Transformer``, class ``RNN``): 2,846,224 parameters for one observation.

Encoder E and decoder D rebuild the clean 28×28 superposition ẑ from the 14×14 observation y; two separators
S1, S2 split a superposition into x̂1, x̂2. Training feeds the separators the true z (Fig. 2b), testing ẑ
(Fig. 2c). Loss (3): Huber(ẑ, z) + Huber(x̂1, x1) + Huber(x̂2, x2), δ = 1 (sources fixed-order or PIT).

Layers (K observations; BN = BatchNorm, ``a ⊕ f`` = ``a + f(a)``; sizes for 28×28 sources):

    E  conv2×2 K→32 (pad 1: 15²) BN ReLU · conv3×3 32→32 BN =: a · conv5×5/2 (a ⊕ ReLU) →64 (8²) BN =: b
       · (b ⊕ conv3×3 64→64) BN ReLU · conv5×5/2 64→128 (4²) BN · conv3×3 128→128 BN ReLU
       · conv3×3 128→64 BN ReLU · conv3×3 64→8 ReLU                          — the 8×4×4 bottleneck
    D  convT3×3 8→64 BN LReLU · convT3×3 64→128 BN =: a · convT3×3/2 (a ⊕ LReLU) →64 (7²) BN =: b
       · (b ⊕ convT5×5 64→64) BN LReLU · convT3×3/2 64→32 (13²) BN · convT5×5 32→32 BN LReLU
       · convT3×3 32→16 BN LReLU · convT2×2 16→K (14²) LReLU
    up convT3×3 K→4 BN ReLU · convT5×5/2 4→K (28²) · sigmoid, times z's range          = ẑ
    S  (each) conv5×5/2 K→32 (14²) BN ReLU · conv7×7/3 →64 (5²) BN ReLU · conv7×7/3 →128 (2²) BN ReLU
       · convT7×7/3 →64 (5²) BN LReLU · convT7×7/3 →32 (14²) BN LReLU · convT5×5/2 →1 (28²) · sigmoid
       (1,006,081 parameters each)

Departures the benchmark needs, each a parameter whose default is the paper's:
- z's range: the public code sums uint8 images with wrap-around, so z lies in [0, 1] and a sigmoid can reach
  it; under ``superpose: sum`` z lies in [0, Σ_s w_ks], so ẑ is the sigmoid times that range (1 for the paper's
  data: no change there).
- ``residual`` (default false): D's output logits are added to the logit of the bilinear upsampling of y
  before the sigmoid, so the untrained D starts at the classical estimate.
- ``prior`` (default false): each separator's logits are added to the logit of the even split Σ_k z_k / Σ W.
Both have no parameters; the earlier network that needed them is ``convsep-res`` (methods/convsep_res.py).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sepbench import Batch, Param, Requirements, Resources, Task, TorchMethod, register_method, upsample
from sepbench.methods.estimates import even_split_logit, logit
from sepbench.methods.losses import LOSS_MODES, separation_loss


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels)


class Encoder(nn.Module):
    """E: ``(N, K, 14, 14)`` → the ``(N, 8, 4, 4)`` bottleneck, with the public code's two additive skips."""

    def __init__(self, n_obs: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(n_obs, 32, 2, padding=1), _bn(32), nn.ReLU(),
                                  nn.Conv2d(32, 32, 3, padding=1), _bn(32))
        self.down1 = nn.Sequential(nn.Conv2d(32, 64, 5, stride=2, padding=2), _bn(64))
        self.mid1 = nn.Conv2d(64, 64, 3, padding=1)
        self.rest = nn.Sequential(
            _bn(64), nn.ReLU(), nn.Conv2d(64, 128, 5, stride=2, padding=2), _bn(128),
            nn.Conv2d(128, 128, 3, padding=1), _bn(128), nn.ReLU(),
            nn.Conv2d(128, 64, 3, padding=1), _bn(64), nn.ReLU(),
            nn.Conv2d(64, 8, 3, padding=1), nn.ReLU())

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        a = self.stem(y)
        b = self.down1(a + F.relu(a))
        return self.rest(b + self.mid1(b))


class Decoder(nn.Module):
    """D: the bottleneck → ``(N, K, 14, 14)``, mirroring E with transposed convolutions and leaky ReLUs."""

    def __init__(self, n_obs: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.ConvTranspose2d(8, 64, 3, padding=1), _bn(64), nn.LeakyReLU(),
                                  nn.ConvTranspose2d(64, 128, 3, padding=1), _bn(128))
        self.up1 = nn.Sequential(nn.ConvTranspose2d(128, 64, 3, stride=2, padding=1), _bn(64))
        self.mid1 = nn.ConvTranspose2d(64, 64, 5, padding=2)
        self.rest = nn.Sequential(
            _bn(64), nn.LeakyReLU(), nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1), _bn(32),
            nn.ConvTranspose2d(32, 32, 5, padding=2), _bn(32), nn.LeakyReLU(),
            nn.ConvTranspose2d(32, 16, 3, padding=1), _bn(16), nn.LeakyReLU(),
            nn.ConvTranspose2d(16, n_obs, 2), nn.LeakyReLU())

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        a = self.stem(code)
        b = self.up1(a + F.leaky_relu(a))
        return self.rest(b + self.mid1(b))


def upsampling_head(n_obs: int) -> nn.Sequential:
    """14×14 → 28×28 logits of ẑ (the sigmoid is applied by the network, after the optional residual)."""
    return nn.Sequential(nn.ConvTranspose2d(n_obs, 4, 3, padding=1), _bn(4), nn.ReLU(),
                         nn.ConvTranspose2d(4, n_obs, 5, stride=2, padding=2, output_padding=1))


def separator(n_obs: int) -> nn.Sequential:
    """S_i: a 28×28 superposition → one source's logits, through a strided 2×2 bottleneck."""
    return nn.Sequential(
        nn.Conv2d(n_obs, 32, 5, stride=2, padding=2), _bn(32), nn.ReLU(),
        nn.Conv2d(32, 64, 7, stride=3, padding=3), _bn(64), nn.ReLU(),
        nn.Conv2d(64, 128, 7, stride=3, padding=3), _bn(128), nn.ReLU(),
        nn.ConvTranspose2d(128, 64, 7, stride=3, padding=3, output_padding=1), _bn(64), nn.LeakyReLU(),
        nn.ConvTranspose2d(64, 32, 7, stride=3, padding=3, output_padding=1), _bn(32), nn.LeakyReLU(),
        nn.ConvTranspose2d(32, 1, 5, stride=2, padding=2, output_padding=1))


class ConvSepNet(nn.Module):
    """E, D, the upsampling head and S separators; ``forward`` is the test-time path y → ẑ → (x̂1, …, x̂S)."""

    def __init__(self, n_obs: int, n_sources: int, z_range: float, total_weight: float, factor: int,
                 residual: bool = False, prior: bool = False) -> None:
        super().__init__()
        self.z_range, self.total_weight, self.factor = z_range, total_weight, factor
        self.residual, self.prior = residual, prior
        self.encoder = Encoder(n_obs)
        self.decoder = Decoder(n_obs)
        self.upsample = upsampling_head(n_obs)
        self.separators = nn.ModuleList([separator(n_obs) for _ in range(n_sources)])

    def reconstruct(self, y: torch.Tensor) -> torch.Tensor:
        """ẑ ``(N, K, 28, 28)`` = z's range × sigmoid(head logits [+ logit of up(y) / range if residual])."""
        logits = self.upsample(self.decoder(self.encoder(y)))
        if self.residual:
            logits = logits + logit(upsample(y, self.factor) / self.z_range)
        return self.z_range * torch.sigmoid(logits)

    def split(self, z: torch.Tensor) -> torch.Tensor:
        """The separators applied to a superposition ``(N, K, 28, 28)`` → ``(N, S, 28, 28)``."""
        logits = torch.cat([sep(z) for sep in self.separators], dim=1)
        if self.prior:
            logits = logits + even_split_logit(z, self.total_weight)
        return torch.sigmoid(logits)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.split(self.reconstruct(y))


def z_range(task: Task) -> float:
    """The largest value a clean superposition can take: 1 under uint8 wrap-around, else the largest row sum."""
    if task.superpose == "uint8-wrap":
        return 1.0
    return float(task.weight_matrix().sum(dim=1).max())


@register_method("convsep")
class ConvSep(TorchMethod):
    """Model I (ConvSep) as the paper's public code builds it: conv encoder-decoder to ẑ, then two separators."""

    parameters: ClassVar[dict[str, Param]] = {
        "loss": Param("fixed", str, choices=LOSS_MODES, help="fixed-order targets (the paper's) or PIT"),
        "residual": Param(False, bool, help="ẑ's logits start from the upsampled y (false: the paper's)"),
        "prior": Param(False, bool, help="separator logits start from the even split (false: the paper's)"),
    }
    #: 8 cells per GPU: where the total training rate stopped rising on an H200 (docs/performance.md)
    resources: ClassVar[Resources] = Resources(cpu=1, gpu=0.125)
    # E, D and the head are sized for it, layer for layer
    requires: ClassVar[Requirements] = Requirements(needs_training=True, observation_shape=(14, 14))
    cpu_mixtures_per_s = 90.0  # one thread, batch 64, fp32 (sepbench.perf.rates, at the reference speed)
    cpu_bf16_speedup = 1.5
    channels_last = True

    def build_network(self) -> nn.Module:
        task, p = self.task, self.params
        return ConvSepNet(task.n_observations, task.n_sources, z_range(task), float(task.weight_matrix().sum()),
                          task.downsample, p["residual"], p["prior"])

    def training_loss(self, net: nn.Module, batch: Batch) -> torch.Tensor:
        """Loss (3). In training the separators see the true z (Fig. 2b); in evaluation (validation) ẑ."""
        z_hat = net.reconstruct(batch.y)
        x_hat = net.split(batch.z if net.training else z_hat)
        z_term = F.huber_loss(z_hat.float(), batch.z.float(), delta=1.0)
        return z_term + separation_loss(x_hat, batch.x, self.params["loss"])
