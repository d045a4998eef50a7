"""A cheaper dropout mask for CPU training: same distribution as ``nn.Dropout``, half the time."""

from __future__ import annotations

import torch
from torch import nn


def fast_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout (zero with probability ``p``, scale the rest) with a cheaper mask than torch's on a CPU.

    torch draws one random number per element (a large share of a LiGT training step on a CPU; see
    docs/performance.md, "Rates behind the code"). Here each 64-bit draw of torch's generator gives four
    16-bit lanes, one per element, so ``p`` is rounded to a multiple of 1/65,536 and the survivors are scaled
    by the inverse of the rounded keep probability (unbiased), in about half the time of ``F.dropout``.
    Seeded by ``torch.manual_seed`` like any torch random op.
    """
    dropped = round(p * 65536)
    if dropped == 0:
        return x
    if dropped >= 65536:
        return x * 0
    n = x.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-2**63, None)
    keep = bits.view(torch.int16)[:n].view(x.shape) >= dropped - 32768
    return torch.where(keep, x * (65536 / (65536 - dropped)), 0)


class FastDropout(nn.Dropout):
    """:class:`torch.nn.Dropout` with :func:`fast_dropout`'s mask; identity in eval mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p) if self.training else x


def use_fast_dropout(net: nn.Module) -> int:
    """Replace every plain :class:`torch.nn.Dropout` inside ``net`` by a :class:`FastDropout`; returns how many.

    Dropout inside :class:`torch.nn.MultiheadAttention` (its ``dropout`` float) is torch's own and stays.
    """
    replaced = 0
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Dropout:
                setattr(module, name, FastDropout(child.p, child.inplace))
                replaced += 1
    return replaced
