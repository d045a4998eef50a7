"""Training checkpoints: a training interrupted after an epoch resumes from its checkpoint and ends exactly as an
uninterrupted one (fp32 and bf16, with and without a schedule); a checkpoint of another key, or a damaged one, is
ignored with a warning and training starts at epoch 1."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from sepbench.api import FitContext, TrainBudget
from sepbench.datasets.mixtures import TrainingData
from sepbench.methods.losses import separation_loss
from sepbench.methods.training import adamw_cosine, default_optimiser, train_network

TIMING = ("seconds", "elapsed")  # an epoch's record: these are measured, the rest is computed


class Interrupted(Exception):
    """Stands for a kill: raised by the progress callback once epoch 2 has begun."""


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(196, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 2 * 784),
                         nn.Sigmoid(), nn.Unflatten(1, (2, 28, 28)))


def _loss(module: nn.Module, batch) -> torch.Tensor:
    return separation_loss(module(batch.y), batch.x)


def _ctx(checkpoint: Path | None = None, key: str = "k", precision: str = "fp32", progress=None,
         logger: logging.Logger | None = None) -> FitContext:
    budget = TrainBudget(mixtures=64, epochs=3, batch_size=16, lr=1e-3, precision=precision)
    return FitContext(device=torch.device("cpu"), seed=0, budget=budget, progress=progress or (lambda info: None),
                      logger=logger or logging.getLogger("sepbench.test"), checkpoint=checkpoint, checkpoint_key=key)


def _train(make_data, single_task, ctx: FitContext, factory=default_optimiser) -> tuple[nn.Module, list[dict]]:
    net = _net()
    history = train_network(net, make_data(single_task, n_mixtures=64), ctx, _loss, optimiser_factory=factory)
    return net, history


def _interrupt_at_epoch_2(info: dict) -> None:
    if info.get("epoch") == 2:
        raise Interrupted


def _computed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMING} for record in history]


def _same_net(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("precision, factory", [("fp32", default_optimiser), ("fp32", adamw_cosine),
                                                ("bf16", adamw_cosine)])
def test_a_training_resumed_after_epoch_1_ends_as_an_uninterrupted_one(tmp_path, make_data, single_task, precision,
                                                                      factory) -> None:
    whole_net, whole = _train(make_data, single_task, _ctx(precision=precision), factory)
    path = tmp_path / "cell.pt"
    with pytest.raises(Interrupted):
        _train(make_data, single_task, _ctx(path, precision=precision, progress=_interrupt_at_epoch_2), factory)
    assert torch.load(path, weights_only=True)["epoch"] == 1
    notices = []
    ctx = _ctx(path, precision=precision, progress=notices.append)
    net, history = _train(make_data, single_task, ctx, factory)
    assert ctx.resumed_from_epoch == 1
    assert {"notice": f"resumed from epoch 1 of 3 (checkpoint {path})"} in notices
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert _computed(history) == _computed(whole)
    assert _same_net(net, whole_net)
    y = make_data(single_task, n_mixtures=64, seed=5).validation.y
    with torch.no_grad():
        assert torch.equal(net(y), whole_net(y))
    assert not list(tmp_path.glob(".*.part"))  # every write renamed into place
    assert torch.load(path, weights_only=True)["epoch"] == 3  # the last epoch's, until the driver removes it


def test_a_finished_trainings_checkpoint_skips_training(tmp_path, make_data, single_task) -> None:
    path = tmp_path / "cell.pt"
    first_net, first = _train(make_data, single_task, _ctx(path))
    ctx = _ctx(path, progress=_interrupt_at_epoch_2)  # any training step would raise
    net, history = _train(make_data, single_task, ctx)
    assert ctx.resumed_from_epoch == 3
    assert history == first  # the records as they were, timings too
    assert _same_net(net, first_net)


def test_a_checkpoint_of_another_key_is_ignored(tmp_path, make_data, single_task, caplog) -> None:
    whole_net, whole = _train(make_data, single_task, _ctx())
    path = tmp_path / "cell.pt"
    with pytest.raises(Interrupted):
        _train(make_data, single_task, _ctx(path, key="other code", progress=_interrupt_at_epoch_2))
    notices, epochs = [], []

    def progress(info: dict) -> None:
        notices.append(info.get("notice"))
        epochs.append(info.get("epoch"))

    ctx = _ctx(path, key="k", progress=progress)
    with caplog.at_level(logging.WARNING, logger="sepbench.test"):
        net, history = _train(make_data, single_task, ctx)
    assert ctx.resumed_from_epoch is None
    assert "its key differs" in caplog.text and "training starts at epoch 1" in caplog.text
    assert any(n and "ignored" in n for n in notices)
    assert [e for e in epochs if e is not None][0] == 1
    assert _computed(history) == _computed(whole)
    assert _same_net(net, whole_net)
    assert torch.load(path, weights_only=True)["key"] == "k"  # replaced by this training's own


@pytest.mark.parametrize("damage", ["truncated", "garbage", "folder", "empty"])
def test_a_damaged_checkpoint_is_ignored_with_a_warning(tmp_path, make_data, single_task, caplog, damage) -> None:
    whole_net, whole = _train(make_data, single_task, _ctx())
    path = tmp_path / "cell.pt"
    with pytest.raises(Interrupted):
        _train(make_data, single_task, _ctx(path, progress=_interrupt_at_epoch_2))
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x80\x04not a checkpoint" * 100)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
        path.mkdir()
    ctx = _ctx(path)
    with caplog.at_level(logging.WARNING, logger="sepbench.test"):
        net, history = _train(make_data, single_task, ctx)
    assert ctx.resumed_from_epoch is None
    assert "cannot be read" in caplog.text and "training starts at epoch 1" in caplog.text
    assert _computed(history) == _computed(whole)
    assert _same_net(net, whole_net)


def test_a_checkpoint_that_does_not_fit_the_network_is_not_trusted_in_part(tmp_path, make_data, single_task,
                                                                             caplog) -> None:
    whole_net, whole = _train(make_data, single_task, _ctx())
    path = tmp_path / "cell.pt"
    with pytest.raises(Interrupted):
        _train(make_data, single_task, _ctx(path, progress=_interrupt_at_epoch_2))
    state = torch.load(path, weights_only=True)
    state["net"] = {k: v for k, v in state["net"].items() if not k.startswith("4.")}  # the same key, a part missing
    torch.save(state, path)
    ctx = _ctx(path)
    with caplog.at_level(logging.WARNING, logger="sepbench.test"):
        net, history = _train(make_data, single_task, ctx)
    assert ctx.resumed_from_epoch is None
    assert "does not fit this training" in caplog.text
    assert _computed(history) == _computed(whole)
    assert _same_net(net, whole_net)


def test_an_unwritable_checkpoint_does_not_stop_training(tmp_path, make_data, single_task, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING, logger="sepbench.test"):
        _, history = _train(make_data, single_task, _ctx(blocker / "cell.pt"))  # its folder is a file
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert caplog.text.count("cannot write the checkpoint") == 1  # said once, then no more tries


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_on_cuda_a_resumed_training_ends_as_an_uninterrupted_one(tmp_path, digits, single_task, precision) -> None:
    """The data's generator on the GPU and the GPU's own random state travel in the checkpoint too."""
    device = torch.device("cuda", 0)

    def train(ctx: FitContext) -> tuple[nn.Module, list[dict]]:
        ctx.device = device
        net = _net().to(device)
        data = TrainingData(digits.to(device), single_task, 64, 0)  # generated on the GPU, as a cell does
        return net, train_network(net, data, ctx, _loss, optimiser_factory=adamw_cosine)

    whole_net, whole = train(_ctx(precision=precision))
    again_net, again = train(_ctx(precision=precision))
    if not _same_net(whole_net, again_net):
        pytest.skip("two uninterrupted trainings differ on this GPU (non-deterministic kernels)")
    path = tmp_path / "cell.pt"
    with pytest.raises(Interrupted):
        train(_ctx(path, precision=precision, progress=_interrupt_at_epoch_2))
    ctx = _ctx(path, precision=precision)
    net, history = train(ctx)
    assert ctx.resumed_from_epoch == 1
    assert _computed(history) == _computed(whole)
    assert _same_net(net, whole_net)
