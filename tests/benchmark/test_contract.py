"""The method contract: every registered method passes it, and each check catches the fault it names."""

from __future__ import annotations

import random
import re
import sys
from typing import ClassVar

import pytest
import torch

from sepbench.api import Method, Param, Requirements, Task
from sepbench.cli import main
from sepbench.contract import (
    CHECKS,
    assert_method_contract,
    check_method,
    contract_params,
    parametrize_with_checks,
    synthetic_digits,
)
from sepbench.datasets.forward import upsample
from sepbench.errors import ParameterError, UserError
from sepbench.registry import available_methods


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a busy 2-core machine two threads can make convolutions many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@parametrize_with_checks(sorted(available_methods()))
def test_every_registered_method_meets_the_contract(method, check):
    """One case per method and check, e.g. ``ligt-batch-independence``: a failure names the check."""
    check(method)


class EvenSplit(Method):
    """A correct method to derive faulty ones from: every source is the upsampled observation split evenly."""

    parameters: ClassVar[dict[str, Param]] = {"gain": Param(1.0, float, positive=True)}

    def separate(self, y: torch.Tensor) -> torch.Tensor:
        estimate = upsample(y.sum(1, keepdim=True), self.task.downsample) / float(self.task.weight_matrix().sum())
        return (self.params["gain"] * estimate).expand(-1, self.task.n_sources, -1, -1).contiguous()


class LowResolution(EvenSplit):
    def separate(self, y):
        return super().separate(y)[..., ::2, ::2]


class Float64(EvenSplit):
    def separate(self, y):
        return super().separate(y).double()


class NotANumber(EvenSplit):
    def separate(self, y):
        return super().separate(y) * float("nan")


class TooBright(EvenSplit):
    def separate(self, y):
        return super().separate(y) + 2.0


class WrongDevice(EvenSplit):
    def separate(self, y):
        return super().separate(y).to("meta")


class ModifiesInput(EvenSplit):
    def separate(self, y):
        return super().separate(y.add_(1.0))


class Learns(EvenSplit):
    """A correct learned method: reads its training data, writes into none of it."""

    requires: ClassVar[Requirements] = Requirements(needs_training=True)

    def fit(self, data, ctx):
        self.mean_ = float(data.images.mean()) + float(sum(batch.x.mean() for batch in data.epoch(16)))
        return super().fit(data, ctx)


class ShiftsTrainingImages(Learns):
    """Centres its training images in place: in a run, every later cell of the process would see them shifted."""

    def fit(self, data, ctx):
        data.images.sub_(0.5)
        return super().fit(data, ctx)


class ScalesValidation(Learns):
    def fit(self, data, ctx):
        data.validation.y.mul_(2.0)
        return super().fit(data, ctx)


class RebindsTrainingImages(Learns):
    """Replaces its reference with a shifted copy: nothing it was given changes."""

    def fit(self, data, ctx):
        data.images = data.images - 0.5
        return super().fit(data, ctx)


class BatchNormalised(EvenSplit):
    """Divides by the batch's brightest pixel: each output depends on the other mixtures."""

    def separate(self, y):
        out = super().separate(y)
        return out / out.max()


class DeclaredBatchDependent(BatchNormalised):
    batch_dependent = True


class Unseeded(EvenSplit):
    """Learns an offset from an unseeded source: a second fit with the same seed gives other numbers."""

    requires: ClassVar[Requirements] = Requirements(needs_training=True)

    def fit(self, data, ctx):
        self.offset_ = random.SystemRandom().random()
        return super().fit(data, ctx)

    def separate(self, y):
        return super().separate(y) + self.offset_


class AcceptsAnything(EvenSplit):
    @classmethod
    def resolve_params(cls, params):
        return {"gain": 1.0, **params}


class BadDefault(EvenSplit):
    """Its own check refuses its own default."""

    @classmethod
    def check_params(cls, params, task):
        if params["gain"] >= 1:
            raise ParameterError(f"method {cls.name!r}: parameter 'gain' must be < 1, got {params['gain']}")


class NotAFlag(EvenSplit):
    batch_dependent = "no"


class RaisesValueError(EvenSplit):
    def __init__(self, task, **params):
        if set(params) - {"gain"}:
            raise ValueError("what is this?")
        super().__init__(task, **params)


class FitFails(EvenSplit):
    requires: ClassVar[Requirements] = Requirements(needs_training=True)

    def fit(self, data, ctx):
        raise RuntimeError("out of ideas")


class ThreeDetectors(EvenSplit):
    requires: ClassVar[Requirements] = Requirements(min_observations=3)


def test_parametrize_with_checks_names_each_case_method_dash_check():
    mark = parametrize_with_checks(["average", EvenSplit])
    ids = [case.id for case in mark.args[1]]
    names = [check.name for check in CHECKS]
    assert ids == [f"average-{n}" for n in names] + [f"EvenSplit-{n}" for n in names]
    assert len(set(names)) == len(names)
    assert {"declarations", "rejects-unknown-parameter", "fit-then-separate", "shape", "dtype", "device", "finite",
            "range", "input-untouched", "training-data-untouched", "batch-independence", "same-seed-same-output",
            "n_parameters"} <= set(names)
    assert all(case.values[1] in CHECKS for case in mark.args[1])


def test_one_check_fails_alone_and_names_itself():
    checks = {check.name: check for check in CHECKS}
    with pytest.raises(AssertionError, match="method Float64 fails contract check 'dtype':") as error:
        checks["dtype"](Float64)
    assert "✗ single: dtype: torch.float64, expected torch.float32" in str(error.value)
    for name in ("shape", "device", "finite", "batch-independence", "same-seed-same-output"):
        assert all(r.passed for r in checks[name](Float64))


def test_contract_params_runs_the_methods_own_check():
    assert contract_params(BadDefault, {"gain": 0.5}) == {"gain": 0.5}
    with pytest.raises(ParameterError, match="'gain' must be < 1, got 2.0"):
        contract_params(BadDefault, {"gain": 2})


def _by_status(results):
    return {status: {r.name for r in results if r.status == status} for status in ("pass", "fail", "note")}


def test_a_correct_method_passes_every_check():
    results = check_method(EvenSplit)
    assert all(r.passed for r in results), [r.line() for r in results if not r.passed]
    names = {r.name for r in results}
    for check in ("shape", "dtype", "device", "finite", "range", "input untouched", "batch independence",
                  "same seed, same output", "fit then separate"):
        assert {f"single: {check}", f"dual: {check}"} <= names
    assert "rejects an unknown parameter" in names


@pytest.mark.parametrize("method, failing", [
    (LowResolution, "single: shape"),
    (Float64, "single: dtype"),
    (NotANumber, "single: finite"),
    (WrongDevice, "single: device"),
    (ModifiesInput, "single: input untouched"),
    (ShiftsTrainingImages, "single: training data untouched"),
    (ScalesValidation, "dual: training data untouched"),
    (BatchNormalised, "single: batch independence"),
    (Unseeded, "single: same seed, same output"),
    (AcceptsAnything, "rejects an unknown parameter"),
    (RaisesValueError, "rejects an unknown parameter"),
    (FitFails, "single: fit then separate"),
    (BadDefault, "parameter defaults"),
    (NotAFlag, "declarations"),
    (ThreeDetectors, "scenarios"),
])
def test_each_fault_fails_the_check_that_names_it(method, failing):
    results = check_method(method)
    assert failing in _by_status(results)["fail"], [r.line() for r in results]
    with pytest.raises(AssertionError, match="breaks the method contract"):
        assert_method_contract(method)


def test_out_of_range_and_declared_batch_dependence_are_notes_not_failures():
    bright = _by_status(check_method(TooBright))
    assert {"single: range", "dual: range"} <= bright["note"] and not bright["fail"]
    declared = check_method(DeclaredBatchDependent)
    assert all(r.passed for r in declared)
    assert "declared batch_dependent = True" in next(r.reason for r in declared
                                                     if r.name == "single: batch independence")


def test_a_method_that_serves_one_scenario_notes_the_other():
    results = check_method("ica")
    skipped = next(r for r in results if r.name == "single: scenario")
    assert skipped.status == "note" and "needs at least 2 observations" in skipped.reason


def test_contract_needs_a_method():
    with pytest.raises(UserError, match="unknown method 'nosuch'"):
        check_method("nosuch")
    with pytest.raises(UserError, match="not a Method subclass"):
        check_method(int)


def test_synthetic_digits_look_like_strokes_on_black():
    images = synthetic_digits(32, seed=3)
    assert images.shape == (32, 28, 28) and images.dtype == torch.float32
    assert images.min() == 0 and images.max() == 1
    ink = (images > 0.5).float().mean(dim=(1, 2))
    assert (ink > 0.03).all() and (ink < 0.4).all()  # MNIST: about 0.13 of the pixels
    assert images[:, :3].max() == 0 and images[:, :, -3:].max() == 0  # an empty border, like MNIST
    assert torch.equal(images, synthetic_digits(32, seed=3))


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run ``bench ARGS`` in this process: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["bench", *args])
    try:
        main()
        status = 0
    except SystemExit as exc:
        status = exc.code or 0
    out = capsys.readouterr()
    return status, out.out, out.err


def test_check_method_command_exit_status(tmp_path, monkeypatch, capsys, clean_registry):
    status, out, _ = cli(monkeypatch, capsys, "check-method", "average")
    assert status == 0 and "✓ single: batch independence" in out and "checks passed" in out
    status, _, err = cli(monkeypatch, capsys, "check-method", "nosuch")
    assert status == 2 and err.startswith("error: unknown method 'nosuch'")
    status, _, err = cli(monkeypatch, capsys, "check-method", "average", "-p", "gain=2")
    assert status == 2 and "unknown parameter 'gain'" in err
    status, _, err = cli(monkeypatch, capsys, "check-method", "ligt", "-p", "heads=7")  # the method's own check
    assert status == 2 and err.strip() == "error: method 'ligt': heads=7 must divide the model width 288"

    (tmp_path / "faulty_plugin.py").write_text(
        "from sepbench.api import Method, register_method\n\n\n"
        "@register_method('faulty')\n"
        "class Faulty(Method):\n"
        "    def separate(self, y):\n"
        "        return y.double()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "faulty_plugin", raising=False)
    status, out, _ = cli(monkeypatch, capsys, "check-method", "faulty", "--plugin", "faulty_plugin")
    assert status == 1, out
    assert "method contract: faulty (module faulty_plugin)" in out
    assert "✗ single: shape" in out and "checks failed" in out


class Sized(EvenSplit):
    requires: ClassVar[Requirements] = Requirements(observation_shape=(14, 14))


def test_declared_observation_shape_is_checked_by_the_base_class_for_any_method():
    paper, full, four = (Task(((1.0, 1.0),), d, 0.0) for d in (2, 1, 4))
    assert Sized.unsupported_reason(paper) is None
    assert Sized.unsupported_reason(full) == (
        "takes 14×14 observations only (its layers are sized for them), scenario has 28×28")
    assert "scenario has 7×7" in Sized.unsupported_reason(four)
    assert EvenSplit.unsupported_reason(full) is None  # None: any size
    for bad in ((14,), (14, 0), [14, 14], (14.0, 14)):
        with pytest.raises(ValueError, match="observation_shape must be None or"):
            Requirements(observation_shape=bad)


def _result(results, name):
    return next(r for r in results if r.name == name)


def test_training_data_untouched_names_what_fit_wrote_into():
    shifted = _result(check_method(ShiftsTrainingImages), "dual: training data untouched")
    assert shifted.status == "fail" and shifted.reason.startswith("fit modified images in place")
    scaled = _result(check_method(ScalesValidation), "single: training data untouched")
    assert scaled.status == "fail" and scaled.reason.startswith("fit modified validation.y in place")
    for method in (Learns, RebindsTrainingImages):
        results = check_method(method)
        assert all(r.passed for r in results), [r.line() for r in results if not r.passed]
        assert _result(results, "single: training data untouched").reason == (
            "fit leaves its training images and validation set as they were")
    assert _result(check_method(EvenSplit), "single: training data untouched").reason == (
        "no training data (the method does not learn)")


def test_check_method_command_catches_a_plugin_that_writes_into_its_training_images(tmp_path, monkeypatch, capsys,
                                                                                  clean_registry):
    (tmp_path / "centring_plugin.py").write_text(
        "from sepbench.api import Method, Requirements, register_method\n"
        "from sepbench.datasets.forward import upsample\n\n\n"
        "@register_method('centring')\n"
        "class Centring(Method):\n"
        "    requires = Requirements(needs_training=True)\n\n"
        "    def fit(self, data, ctx):\n"
        "        data.images -= data.images.mean()\n"
        "        return self\n\n"
        "    def separate(self, y):\n"
        "        up = upsample(y.sum(1, keepdim=True), self.task.downsample) / 2\n"
        "        return up.expand(-1, self.task.n_sources, -1, -1).contiguous()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "centring_plugin", raising=False)
    status, out, _ = cli(monkeypatch, capsys, "check-method", "centring", "--plugin", "centring_plugin")
    assert status == 1, out
    assert "✗ single: training data untouched: fit modified images in place" in out
    assert "✓ single: input untouched" in out and re.search(r"^2 of \d+ checks failed", out, re.MULTILINE)
