"""LiGT (Model II): size, shapes, attention within one image, learning, parameter checks; the batch-seq variant."""

from __future__ import annotations

import pytest
import torch

from benchmark.errors import ParameterError
from methods.ligt import LiGT, LiGTBatchSeq

PAPER_COUNT = 2_301_865
TINY = {"channels": 8, "width": 32, "heads": 4, "ff": 64}


@pytest.mark.parametrize("cls", [LiGT, LiGTBatchSeq])
def test_parameter_count_matches_paper(cls, single_task) -> None:
    count = cls(single_task).n_parameters()
    print(f"{cls.name} parameters: {count:,} (paper {PAPER_COUNT:,}, {count / PAPER_COUNT - 1:+.3%})")
    assert abs(count - PAPER_COUNT) <= 0.05 * PAPER_COUNT


@pytest.mark.parametrize("scenario", ["single_task", "dual_task"])
def test_outputs_are_two_images_in_unit_range(scenario: str, request) -> None:
    task = request.getfixturevalue(scenario)
    out = LiGT(task).separate(torch.randn(5, task.n_observations, 14, 14))
    assert out.shape == (5, 2, 28, 28)
    assert out.min() >= 0 and out.max() <= 1


def test_attention_runs_over_the_36_positions_of_one_image(single_task) -> None:
    method = LiGT(single_task)
    shapes: list[torch.Size] = []
    method.net.transformer.register_forward_pre_hook(lambda module, args: shapes.append(args[0].shape))
    method.separate(torch.randn(7, 1, 14, 14))
    assert shapes == [torch.Size([7, 36, 288])]  # (batch, tokens of one image, width): batch is not a sequence


def test_batchseq_variant_runs_the_minibatch_as_one_sequence_in_chunks_of_64(single_task) -> None:
    assert LiGTBatchSeq.batch_dependent is True
    assert not getattr(LiGT, "batch_dependent", False)
    method = LiGTBatchSeq(single_task, **{k: v for k, v in TINY.items() if k != "width"})
    shapes: list[torch.Size] = []
    method.net.transformer.register_forward_pre_hook(lambda module, args: shapes.append(args[0].shape))
    out = method.separate(torch.randn(130, 1, 14, 14))
    assert out.shape == (130, 2, 28, 28)
    assert shapes == [torch.Size([1, 64, 288]), torch.Size([1, 64, 288]), torch.Size([1, 2, 288])]


def test_tiny_training_lowers_the_loss(single_task, make_data, fit_context) -> None:
    torch.manual_seed(0)
    method = LiGT(single_task, dropout=0.0, **TINY)
    method.fit(make_data(single_task, n_mixtures=256), fit_context(mixtures=256, epochs=4, batch_size=32))
    losses = [record["train_loss"] for record in method.history_]
    print("ligt train losses:", losses)
    assert len(losses) == 4
    assert losses[-1] < 0.9 * losses[0]
    assert not method.net.training


def test_parameters_are_validated(single_task) -> None:
    assert LiGT(single_task, loss="pit", **TINY).params["loss"] == "pit"
    with pytest.raises(ParameterError, match="loss"):
        LiGT(single_task, loss="bogus")
    with pytest.raises(ParameterError, match="unknown parameter 'hidden'"):
        LiGT(single_task, hidden=3)
    with pytest.raises(ParameterError, match="heads"):
        LiGT(single_task, heads=7)
    with pytest.raises(ParameterError, match="dropout"):
        LiGT(single_task, dropout=1.5)
    with pytest.raises(ParameterError, match="unknown parameter 'width'"):
        LiGTBatchSeq(single_task, width=32)


def test_pit_loss_trains(single_task, make_data, fit_context) -> None:
    method = LiGT(single_task, loss="pit", **TINY)
    method.fit(make_data(single_task, n_mixtures=32), fit_context(mixtures=32, epochs=1, batch_size=16))
    assert len(method.history_) == 1 and method.history_[0]["train_loss"] > 0
