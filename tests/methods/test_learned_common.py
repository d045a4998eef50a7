"""Test shapes the learned separators share, written once and parametrized over the methods: size and width knob,
shapes for any K and downsample factor, the even-split start, PIT and AdamW + cosine, the true-z / ẑ switch,
learning at a tiny budget, the PIT loss trains, parameter checks. Each method's own numbers stay as they were."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from sepbench import ParameterError, Task, TrainBudget
from sepbench.methods.average import Average
from sepbench.methods.convsep import ConvSep
from sepbench.methods.convsep_res import ConvSepRes
from sepbench.methods.ligt import LiGT
from sepbench.methods.ligt_spatial import LiGTSpatial
from sepbench.methods.patchformer import Patchformer
from sepbench.methods.unet import UNetSeparator

TINY: dict[str, dict[str, Any]] = {
    "unet": {"width": 8, "blocks": 1},
    "patchformer": {"width": 32, "depth": 2, "heads": 4},
    "convsep-res": {"width": 8, "blocks": 1, "sep_width": 8, "sep_depth": 1},
    "ligt-spatial": {"channels": 8, "width": 32, "heads": 4, "ff": 64},
}
REFERENCE = {"unet": UNetSeparator, "patchformer": Patchformer}  # the two reference separators


def _cases(table: dict[str, tuple], names: str) -> Any:
    return pytest.mark.parametrize(names, list(table.values()), ids=list(table))


# --- the reference separators (unet, patchformer) --------------------------------------------------------------

@_cases({"unet": ("unet", 24, "about width²"), "patchformer": ("patchformer", 96, "about 12 · width² per layer")},
        ("name", "half_width", "why"))
def test_default_size_is_that_of_the_papers_models_and_width_scales_it(name, half_width, why, single_task) -> None:
    count = REFERENCE[name](single_task).n_parameters()
    print(f"{name} parameters: {count:,}")
    assert 1_500_000 <= count <= 3_000_000
    half = REFERENCE[name](single_task, width=half_width).n_parameters()
    assert 0.2 * count < half < 0.3 * count, why


OBSERVATIONS = [(((1.0, 1.0),), 2), (((0.7, 0.3), (0.3, 0.7)), 2), (((1.0, 1.0),), 1), (((1.0, 1.0),), 4),
                (((0.6, 0.4), (0.5, 0.5), (0.2, 0.8)), 3)]


@pytest.mark.parametrize(("weights", "factor"), OBSERVATIONS,
                         ids=[f"K{len(w)}-x{f}" for w, f in OBSERVATIONS])
@pytest.mark.parametrize("name", list(REFERENCE))
def test_any_number_of_observations_and_any_downsample_factor(name, weights, factor) -> None:
    task = Task(weights, factor, 0.01)
    out = REFERENCE[name](task, **TINY[name]).separate(torch.rand(3, task.n_observations, *task.observation_shape))
    assert out.shape == (3, 2, 28, 28) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1


@pytest.mark.parametrize("name", list(REFERENCE))
def test_untrained_network_is_the_average_baseline(name, dual_task) -> None:
    y = torch.rand(4, 2, 14, 14) * 0.9
    untrained = REFERENCE[name](dual_task).separate(y)
    torch.testing.assert_close(untrained, Average(dual_task).separate(y), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", list(REFERENCE))
def test_pit_adamw_and_cosine_by_default(name, single_task) -> None:
    cls = REFERENCE[name]
    method = cls(single_task, **TINY[name])
    assert method.params["loss"] == "pit" and method.params["schedule"] == "cosine"
    optimiser, schedule = method.configure_optimiser(method.net, TrainBudget(), 10)
    assert isinstance(optimiser, torch.optim.AdamW) and schedule is not None
    optimiser, schedule = cls(single_task, schedule="constant", **TINY[name]).configure_optimiser(
        method.net, TrainBudget(), 10)
    assert isinstance(optimiser, torch.optim.Adam) and schedule is None


# --- the earlier networks (convsep-res, ligt-spatial): near the paper's size, two images in [0, 1] -----------

@_cases({"convsep-res": (ConvSepRes, 2_846_224, 0.02), "ligt-spatial": (LiGTSpatial, 2_301_865, 0.05)},
        ("cls", "paper_count", "tolerance"))
def test_parameter_count_is_near_the_papers(cls, paper_count, tolerance, single_task) -> None:
    count = cls(single_task).n_parameters()
    print(f"{cls.name} parameters: {count:,} (paper {paper_count:,}, {count / paper_count - 1:+.3%})")
    assert abs(count - paper_count) <= tolerance * paper_count


@pytest.mark.parametrize("scenario", ["single_task", "dual_task"])
@pytest.mark.parametrize("cls", [ConvSepRes, LiGTSpatial], ids=["convsep-res", "ligt-spatial"])
def test_outputs_are_two_images_in_unit_range(cls, scenario: str, request) -> None:
    task = request.getfixturevalue(scenario)
    out = cls(task).separate(torch.randn(5, task.n_observations, 14, 14))
    assert out.shape == (5, 2, 28, 28)
    assert out.min() >= 0 and out.max() <= 1


# --- the ConvSep family: separators see z in training, ẑ at test ----------------------------------------------

@_cases({"convsep": (ConvSep, {}), "convsep-res": (ConvSepRes, TINY["convsep-res"])}, ("cls", "options"))
def test_separators_get_true_z_in_training_and_z_hat_at_test(cls, options, single_task, make_data) -> None:
    method = cls(single_task, **options)
    net = method.net
    seen: list[torch.Tensor] = []
    for separator in net.separators:
        separator.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    batch = next(make_data(single_task, n_mixtures=8).epoch(8))

    net.train()
    method.training_loss(net, batch)
    assert len(seen) == 2 and all(s is batch.z for s in seen)  # Fig. 2b: the clean superposition

    seen.clear()
    out = method.separate(batch.y)
    with torch.no_grad():
        z_hat = net.reconstruct(batch.y)
    assert len(seen) == 2
    for s in seen:  # Fig. 2c: the decoder's reconstruction, never the true z
        torch.testing.assert_close(s, z_hat)
        assert not torch.allclose(s, batch.z)
    torch.testing.assert_close(out, net.split(z_hat).detach())

    seen.clear()
    net.eval()
    method.training_loss(net, batch)  # validation measures the test-time path
    assert all(s is not batch.z for s in seen)


# --- learning at a tiny budget ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fit:
    """One method's tiny-budget fit and what its losses must show (None: not asserted for that method)."""

    cls: type
    options: dict[str, Any] = field(default_factory=dict)
    mixtures: int = 128
    epochs: int = 3
    lr: float = 1e-3
    epochs_recorded: bool = False        # history_ holds exactly `epochs` records
    train_below: float | None = None     # last train loss < train_below · first
    val_below: float | None = None       # last validation loss < val_below · first


FITS = {
    # from the even split (loss ~0.03); validation mixtures are of held-out images, so they improve more slowly
    "unet": Fit(UNetSeparator, TINY["unet"], 256, 6, 3e-3, train_below=0.9, val_below=0.98),  # held-out images
    "patchformer": Fit(Patchformer, TINY["patchformer"], 256, 6, 3e-3, train_below=0.9, val_below=0.95),
    # the residual ẑ and the even-split prior start near the classical estimates (loss ~0.039 here)
    "convsep-res": Fit(ConvSepRes, TINY["convsep-res"], 256, 6, epochs_recorded=True, train_below=0.95),
    # the prior starts near the even split (loss ~0.036 here), the bare sigmoid far above it
    "ligt-spatial-prior": Fit(LiGTSpatial, {"dropout": 0.0, "prior": True, **TINY["ligt-spatial"]}, 256, 6,
                              epochs_recorded=True, train_below=0.95),
    "ligt-spatial-bare": Fit(LiGTSpatial, {"dropout": 0.0, "prior": False, **TINY["ligt-spatial"]}, 256, 4,
                             epochs_recorded=True, train_below=0.9),
    "convsep": Fit(ConvSep),
    "convsep-residual-prior": Fit(ConvSep, {"residual": True, "prior": True}),
    "ligt-bare": Fit(LiGT, {"prior": False}),
    "ligt-prior": Fit(LiGT, {"prior": True}),
}


@pytest.mark.parametrize("fit", list(FITS.values()), ids=list(FITS))
def test_tiny_training_lowers_the_loss(fit: Fit, single_task, make_data, fit_context) -> None:
    torch.manual_seed(0)
    method = fit.cls(single_task, **fit.options)
    budget = fit_context(mixtures=fit.mixtures, epochs=fit.epochs, batch_size=32, lr=fit.lr)
    method.fit(make_data(single_task, n_mixtures=fit.mixtures), budget)
    train = [record["train_loss"] for record in method.history_]
    print(f"{fit.cls.name} {fit.options} train losses:", train)
    if fit.epochs_recorded:
        assert len(train) == fit.epochs
    assert all(later < train[0] for later in train[1:])  # every epoch below the first (fresh draws: not monotone)
    assert min(train[-2:]) < min(train[:2])
    if fit.train_below is not None:
        assert train[-1] < fit.train_below * train[0]
    if fit.val_below is not None:
        val = [record["val_loss"] for record in method.history_]
        print("validation:", val)
        assert val[-1] < fit.val_below * val[0]
    assert not method.net.training  # fit leaves the network in eval mode


@_cases({"convsep-res": (ConvSepRes, TINY["convsep-res"]), "ligt-spatial": (LiGTSpatial, TINY["ligt-spatial"])},
        ("cls", "options"))
def test_pit_loss_trains(cls, options, single_task, make_data, fit_context) -> None:
    method = cls(single_task, loss="pit", **options)
    method.fit(make_data(single_task, n_mixtures=32), fit_context(mixtures=32, epochs=1, batch_size=16))
    assert len(method.history_) == 1 and method.history_[0]["train_loss"] > 0


# --- parameter checks -------------------------------------------------------------------------------------------

@_cases({"convsep": (ConvSep, {}), "convsep-res": (ConvSepRes, TINY["convsep-res"]),
         "ligt-spatial": (LiGTSpatial, TINY["ligt-spatial"])}, ("cls", "options"))
def test_pit_loss_is_accepted(cls, options, single_task) -> None:
    assert cls(single_task, loss="pit", **options).params["loss"] == "pit"


BAD_PARAMETERS = {
    "unet-loss": (UNetSeparator, {"loss": "bogus"}, "loss"),
    "unet-width": (UNetSeparator, {"width": 1}, "'width' must be >= 2"),
    "unet-weight_decay": (UNetSeparator, {"weight_decay": -1.0}, "weight_decay"),
    "unet-schedule": (UNetSeparator, {"schedule": "step"}, "schedule"),
    "patchformer-loss": (Patchformer, {"loss": "bogus"}, "loss"),
    "patchformer-heads": (Patchformer, {"heads": 5}, "heads=5 must divide width=192"),
    "patchformer-dropout": (Patchformer, {"dropout": 1.0}, "dropout"),
    "patchformer-weight_decay": (Patchformer, {"weight_decay": -1.0}, "weight_decay"),
    "patchformer-schedule": (Patchformer, {"schedule": "step"}, "schedule"),
    "convsep-loss": (ConvSep, {"loss": "bogus"}, "loss"),
    "convsep-unknown": (ConvSep, {"width": 3}, "unknown parameter 'width'"),
    "convsep-prior": (ConvSep, {"prior": "yes"}, "'prior' must be bool"),
    "convsep-res-loss": (ConvSepRes, {"loss": "bogus"}, "loss"),
    "convsep-res-unknown": (ConvSepRes, {"depth": 3}, "unknown parameter 'depth'"),
    "convsep-res-width": (ConvSepRes, {"width": 1}, "width"),
    "ligt-heads": (LiGT, {"heads": 7}, "heads"),
    "ligt-dropout": (LiGT, {"dropout": 1.5}, "dropout"),
    "ligt-unknown": (LiGT, {"width": 32}, "unknown parameter 'width'"),
    "ligt-spatial-loss": (LiGTSpatial, {"loss": "bogus"}, "loss"),
    "ligt-spatial-unknown": (LiGTSpatial, {"hidden": 3}, "unknown parameter 'hidden'"),
    "ligt-spatial-heads": (LiGTSpatial, {"heads": 7}, "heads"),
    "ligt-spatial-dropout": (LiGTSpatial, {"dropout": 1.5}, "dropout"),
}


@_cases(BAD_PARAMETERS, ("cls", "bad", "match"))
def test_bad_parameters_are_refused(cls, bad, match, single_task) -> None:
    with pytest.raises(ParameterError, match=match):
        cls(single_task, **bad)
