"""ligt-spatial (the earlier LiGT-like network): size, shapes, attention within one image,
the prior (shared shapes: test_learned_common.py)."""

from __future__ import annotations

import pytest
import torch

from sepbench.errors import ParameterError
from sepbench.methods.ligt_spatial import LiGTSpatial as LiGT

TINY = {"channels": 8, "width": 32, "heads": 4, "ff": 64}


def test_attention_runs_over_the_36_positions_of_one_image(single_task) -> None:
    method = LiGT(single_task)
    shapes: list[torch.Size] = []
    method.net.transformer.register_forward_pre_hook(lambda module, args: shapes.append(args[0].shape))
    method.separate(torch.randn(7, 1, 14, 14))
    assert shapes == [torch.Size([7, 36, 288])]  # (batch, tokens of one image, width): batch is not a sequence


@pytest.mark.parametrize("scenario", ["single_task", "dual_task"])
def test_even_split_prior_makes_a_zero_head_output_the_even_split(scenario: str, request) -> None:
    task = request.getfixturevalue(scenario)
    method = LiGT(task, **TINY)
    head = method.net.expander[-1]
    assert isinstance(head, torch.nn.Conv2d)  # no Sigmoid: the prior is added to the logits first
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    y = torch.rand(3, task.n_observations, 14, 14) * 0.9
    out = method.separate(y)
    even = y.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3).sum(1, keepdim=True) / task.weight_matrix().sum()
    expected = even.clamp(1e-3, 1 - 1e-3).expand(-1, 2, -1, -1)
    assert torch.allclose(out, expected, atol=1e-5)
    assert not torch.allclose(out[:, :, ::2, ::2], out[:, :, ::2, ::2].mean())  # follows y, not a constant


def test_prior_off_is_the_papers_bare_sigmoid_with_the_same_parameters(single_task) -> None:
    bare = LiGT(single_task, prior=False)
    assert isinstance(bare.net.expander[-1], torch.nn.Sigmoid)
    assert bare.net.total_weight is None
    assert bare.n_parameters() == LiGT(single_task).n_parameters()
    with pytest.raises(ParameterError, match="'prior' must be bool"):
        LiGT(single_task, prior="yes")
