"""LiGT (Model II) as the public code builds it: exact size, 288 heads, decoder roles, BatchNorm head,
tokens (shared shapes: test_learned_common.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sepbench.contract import check_method
from sepbench.methods.ligt import LiGT, LiGTBatchSeq

PAPER_COUNT = 2_301_865


@pytest.mark.parametrize("cls", [LiGT, LiGTBatchSeq])
def test_parameter_count_is_the_papers_exactly(cls, single_task) -> None:
    assert cls(single_task).n_parameters() == PAPER_COUNT
    assert cls(single_task, prior=True).n_parameters() == PAPER_COUNT


def test_layers_as_the_public_code(single_task) -> None:
    net = LiGT(single_task).net
    assert net.encoder.self_attn.num_heads == 288 and net.encoder.self_attn.head_dim == 1
    assert net.decoder.multihead_attn.num_heads == 288
    assert net.encoder.linear1.out_features == 1024
    assert isinstance(net.expander[-1], nn.BatchNorm2d)  # the head ends in BatchNorm, then the sigmoid
    with torch.no_grad():
        assert net.eval().compressor(torch.rand(2, 1, 14, 14)).shape == (2, 8, 6, 6)


def test_decoder_target_is_the_encoded_tokens_and_memory_the_tokens(single_task) -> None:
    net = LiGT(single_task).net.eval()
    seen = {}
    net.encoder.register_forward_hook(lambda m, args, out: seen.update(enc_in=args[0], enc_out=out))
    net.decoder.register_forward_pre_hook(lambda m, args: seen.update(tgt=args[0], memory=args[1]))
    with torch.no_grad():
        net(torch.rand(3, 1, 14, 14))
    assert seen["tgt"] is seen["enc_out"] and seen["memory"] is seen["enc_in"]
    assert seen["enc_in"].shape == (3, 1, 288)  # default: each image a sequence of one token


def test_batchseq_depends_on_batch_mates_and_the_default_does_not(single_task) -> None:
    torch.manual_seed(0)
    y = torch.rand(16, 1, 14, 14)
    for cls, dependent in ((LiGT, False), (LiGTBatchSeq, True)):
        method = cls(single_task)
        gap = float((method.separate(y[5:6]) - method.separate(y)[5:6]).abs().max())
        assert (gap > 1e-5) if dependent else (gap <= 1e-5), (cls.name, gap)
    assert LiGTBatchSeq.batch_dependent is True and not LiGT.batch_dependent


def test_contract_flags_the_batch_dependent_variant() -> None:
    results = {r.name: r for r in check_method("ligt-batchseq")}
    flagged = [r for r in results.values() if "batch_dependent" in (r.reason or "")]
    assert flagged and all(r.status == "note" for r in flagged)


def test_batchseq_runs_chunks_of_64(single_task) -> None:
    method = LiGTBatchSeq(single_task)
    shapes: list[torch.Size] = []
    method.net.encoder.register_forward_pre_hook(lambda module, args: shapes.append(args[0].shape))
    assert method.separate(torch.randn(130, 1, 14, 14)).shape == (130, 2, 28, 28)
    assert shapes == [torch.Size([1, 64, 288]), torch.Size([1, 64, 288]), torch.Size([1, 2, 288])]
