"""Patchformer reference separator: tokens = patches of one image. The shapes it shares with the other learned
separators (size, any K, even-split start, optimiser, learning, parameter checks) are in test_learned_common.py."""

from __future__ import annotations

import torch

from sepbench.methods.patchformer import Patchformer

TINY = {"width": 32, "depth": 2, "heads": 4}


def test_attention_runs_over_the_patches_of_one_image(single_task) -> None:
    method = Patchformer(single_task, patch=4, **TINY)
    shapes: list[torch.Size] = []
    method.net.encoder.register_forward_pre_hook(lambda module, args: shapes.append(args[0].shape))
    method.separate(torch.randn(7, 1, 14, 14))
    assert shapes == [torch.Size([7, 49, 32])]  # (batch, the 7×7 patches of 28×28, width)
    method = Patchformer(single_task, patch=3, **TINY)  # 28 is not a multiple of 3: padded to 30, 10×10 patches
    shapes.clear()
    method.net.encoder.register_forward_pre_hook(lambda module, args: shapes.append(args[0].shape))
    assert method.separate(torch.randn(2, 1, 14, 14)).shape == (2, 2, 28, 28)
    assert shapes == [torch.Size([2, 100, 32])]
