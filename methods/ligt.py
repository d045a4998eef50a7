"""LiGT, Model II of the paper (Fig. 3), as its public code builds it (GitHub aranganath/Image-disambiguation,
branch ``Transformer``, class ``UpsamplingTransformer``): 2,301,865 parameters for one observation.

Loss (4): Huber(x̂1, x1) + Huber(x̂2, x2), δ = 1, fixed-order (the paper's) or PIT. Layers (K observations,
S sources; every convolution followed by BatchNorm and ReLU unless said otherwise):

    compressor  convT4×4/2 K→K (14²→28²) · conv3×3 →16 · conv3×3 →32 · conv5×5/2 →64 (14²) · conv3×3 →64
                · conv3×3 →8 · conv5×5/2 (pad 1) →8 (6²)                                — 8×6×6 = 288 values
    transformer one encoder and one decoder layer, d = 288, 288 heads (head dimension 1), feed-forward 1024,
                dropout 0.1, post-norm; the decoder's target is the encoder's output and its memory the
                encoder's input (the compressed tokens), as the public code calls ``Decoder(src, memory=tokens)``
    expander    convT5×5/2 (pad 1) 8→8 (13²) · convT3×3 →32 · convT5×5/2 (pad 1) →16 (27²) · convT3×3 →8
                · convT4×4 (pad 1) →S (28²) · BatchNorm (no ReLU) · sigmoid

Tokens. The public code reshapes each image's 288 values into ONE token and feeds the minibatch as the
sequence (torch's layers are sequence-first), so attention runs across the 64 images of a batch and an output
depends on its batch-mates. sepbench's contract asks for an output that depends on its own input only, so
``ligt`` (the default) runs the same network with each image a sequence of its own: one 288-value token, the
network the public code computes for a batch of one. Attention over one token passes its value projection
through; every weight is kept and the count is exact. ``ligt-batchseq`` is the public code's batch-as-sequence
(declared ``batch_dependent``; it separates in chunks of 64 as the public code's test loader did). It is a
method of its own, not a parameter, because the engine reads batch dependence from the class.

``prior`` (default false, no parameters): the expander's logits (after its last BatchNorm) are added to the
logit of the even split ``Σ_k up(y_k) / Σ W`` before the sigmoid. The earlier network with 36 spatial tokens
per image is ``ligt-spatial`` (methods/ligt_spatial.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sepbench import Param, Requirements, Resources, Task, TorchMethod, register_method
from sepbench.errors import ParameterError
from sepbench.methods.estimates import even_split_logit

WIDTH = 288  # 8 × 6 × 6: one image's compressed map, the public code's d_model
SEQ_LEN = 64  # the public code's batch size, the sequence length of the batch-as-sequence variant


def _conv_bn_relu(conv: nn.Module) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(conv.out_channels), nn.ReLU()]


def compressor(n_obs: int) -> nn.Sequential:
    """``(N, K, 14, 14)`` → ``(N, 8, 6, 6)``: up to 28×28, then convolutions down to 6×6."""
    return nn.Sequential(
        *_conv_bn_relu(nn.ConvTranspose2d(n_obs, n_obs, 4, stride=2, padding=1)),
        *_conv_bn_relu(nn.Conv2d(n_obs, 16, 3, padding=1)),
        *_conv_bn_relu(nn.Conv2d(16, 32, 3, padding=1)),
        *_conv_bn_relu(nn.Conv2d(32, 64, 5, stride=2, padding=2)),
        *_conv_bn_relu(nn.Conv2d(64, 64, 3, padding=1)),
        *_conv_bn_relu(nn.Conv2d(64, 8, 3, padding=1)),
        *_conv_bn_relu(nn.Conv2d(8, 8, 5, stride=2, padding=1)),
    )


def expander(n_sources: int) -> nn.Sequential:
    """``(N, 8, 6, 6)`` → ``(N, S, 28, 28)`` logits, the last BatchNorm included (the sigmoid comes after)."""
    return nn.Sequential(
        *_conv_bn_relu(nn.ConvTranspose2d(8, 8, 5, stride=2, padding=1)),
        *_conv_bn_relu(nn.ConvTranspose2d(8, 32, 3, padding=1)),
        *_conv_bn_relu(nn.ConvTranspose2d(32, 16, 5, stride=2, padding=1)),
        *_conv_bn_relu(nn.ConvTranspose2d(16, 8, 3, padding=1)),
        nn.ConvTranspose2d(8, n_sources, 4, padding=1), nn.BatchNorm2d(n_sources),
    )


class LiGTNet(nn.Module):
    """Compressor, transformer, expander. ``seq_len`` None: each image its own sequence; else consecutive
    groups of ``seq_len`` images form one sequence (the public code's batch-as-sequence)."""

    def __init__(self, n_obs: int, n_sources: int, heads: int, ff: int, dropout: float, seq_len: int | None,
                 total_weight: float | None) -> None:
        super().__init__()
        self.seq_len, self.total_weight = seq_len, total_weight
        self.compressor = compressor(n_obs)
        self.encoder = nn.TransformerEncoderLayer(WIDTH, heads, ff, dropout, batch_first=True)
        self.decoder = nn.TransformerDecoderLayer(WIDTH, heads, ff, dropout, batch_first=True)
        self.expander = expander(n_sources)

    def attend(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, L, 288)`` sequences → the decoder's output: target = encoded tokens, memory = the tokens."""
        return self.decoder(self.encoder(tokens), tokens)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        features = self.compressor(y)                                   # (N, 8, 6, 6)
        tokens = features.flatten(1)                                    # (N, 288): one token per image
        if self.seq_len is None:
            out = self.attend(tokens.unsqueeze(1)).squeeze(1)
        else:
            out = torch.cat([self.attend(part.unsqueeze(0)).squeeze(0) for part in tokens.split(self.seq_len)])
        logits = self.expander(out.reshape(features.shape))
        if self.total_weight is not None:
            up = F.interpolate(y, size=logits.shape[-2:], mode="nearest")
            logits = logits + even_split_logit(up, self.total_weight)
        return torch.sigmoid(logits)


@register_method("ligt")
class LiGT(TorchMethod):
    """Model II (LiGT) as the public code builds it, each image its own sequence (batch-independent)."""

    parameters: ClassVar[dict[str, Param]] = {
        "loss": Param("fixed", str, choices=("fixed", "pit"), help="fixed-order targets (the paper's) or PIT"),
        "heads": Param(288, int, positive=True, help="attention heads (must divide 288; the paper's: 288)"),
        "ff": Param(1024, int, positive=True, help="feed-forward width of each transformer layer"),
        "dropout": Param(0.1, float, help="dropout inside the transformer layers (training only)"),
        "prior": Param(False, bool, help="add the even-split logit before the sigmoid (false: the paper's)"),
    }
    #: 2 cells per GPU: where the total training rate stopped rising on an H200 (docs/performance.md)
    resources: ClassVar[Resources] = Resources(cpu=1, gpu=0.5)
    # the compressor and expander are sized for it, layer for layer
    requires: ClassVar[Requirements] = Requirements(needs_training=True, observation_shape=(14, 14))
    cpu_mixtures_per_s = 130.0  # one thread, batch 64, fp32 (sepbench.perf.rates, at the reference speed)
    cpu_bf16_speedup = 1.3
    seq_len: ClassVar[int | None] = None

    @classmethod
    def check_params(cls, params: Mapping[str, Any], task: Task) -> None:
        if WIDTH % params["heads"]:
            raise ParameterError(f"method {cls.name!r}: heads={params['heads']} must divide the model width {WIDTH}")
        if not 0 <= params["dropout"] < 1:
            raise ParameterError(f"method {cls.name!r}: parameter 'dropout' must be in [0, 1), got {params['dropout']}")

    def build_network(self) -> nn.Module:
        p = self.params
        total = float(self.task.weight_matrix().sum()) if p["prior"] else None
        return LiGTNet(self.task.n_observations, self.task.n_sources, p["heads"], p["ff"], p["dropout"],
                       self.seq_len, total)


@register_method("ligt-batchseq")
class LiGTBatchSeq(LiGT):
    """REPRODUCTION of the public code's tokens, not a sound method: the minibatch is the sequence, so an
    output depends on its batch-mates (``separate`` runs chunks of 64, as the public code's test loader)."""

    batch_dependent: ClassVar[bool] = True
    seq_len: ClassVar[int | None] = SEQ_LEN
    cpu_mixtures_per_s = 88.0  # the batch as the sequence (sepbench.perf.rates)

    def separate(self, y: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """Always in chunks of exactly 64 observations (the last may be shorter), as the public code ran."""
        return super().separate(y, chunk=SEQ_LEN)
