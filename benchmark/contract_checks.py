"""The contract's checks on a method's outputs, one function each, run per contract scenario.

Each reads the scenario's cached :class:`sepbench.contract_runs.ScenarioRun` and returns one result per served
scenario, named ``"<scenario>: <check>"`` (e.g. ``single: shape``). A check whose input is missing (fit failed,
the output is no tensor) fails and says which check to read first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from sepbench.api import Method
from sepbench.contract_runs import N_TEST, SCENARIOS, ScenarioRun, error_line, scenario_run, scenario_task

TOLERANCE = 1e-5  # batch independence: one mixture alone vs inside a batch
SAME_SEED_TOLERANCE = 1e-6


@dataclass(frozen=True)
class CheckResult:
    """One check: its name, ``pass``, ``fail`` or ``note`` (passed, but worth knowing), and why."""

    name: str
    status: str
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.status != "fail"

    def line(self) -> str:
        mark = {"pass": "✓", "fail": "✗", "note": "!"}[self.status]
        return f"{mark} {self.name}" + (f": {self.reason}" if self.reason else "")


@dataclass(frozen=True)
class Subject:
    """The method under check and how to run it: parameters (as a grid would give them), device, seed."""

    cls: type[Method]
    params: dict[str, Any]
    device: torch.device
    seed: int

    def resolved_params(self) -> dict[str, Any]:
        """The parameters resolved and passed through the method's own checks for every served scenario."""
        resolved = self.cls.resolve_params(self.params)
        for label in SCENARIOS:
            task = scenario_task(label)
            if self.cls.unsupported_reason(task) is None:
                self.cls.check_params(resolved, task)
        return resolved

    def runs(self) -> list[ScenarioRun]:
        """The served scenarios' runs (fitted and separated once, cached)."""
        runs = [scenario_run(self.cls, label, self.params, self.device, self.seed) for label in SCENARIOS]
        return [run for run in runs if run.unsupported is None]


Verdict = tuple[str, str]  # (status, reason)


def _pass_if(ok: bool, reason: str, why_not: str) -> Verdict:
    return ("pass", reason) if ok else ("fail", why_not)


def _gap(first: torch.Tensor, second: torch.Tensor) -> float:
    return float((first.detach().float().cpu() - second.detach().float().cpu()).abs().max())


def _missing(run: ScenarioRun, usable: bool = False) -> str | None:
    """Why a check cannot look at this run's output (None: it can)."""
    if run.error:
        return "not run: fit then separate failed"
    out = run.out
    if not isinstance(out, torch.Tensor):
        return f"separate returned {type(out).__name__}, not a Tensor"
    if usable and (tuple(out.shape) != run.expected or out.device.type != run.device.type):
        return "not run: the output has the wrong shape or device (see those checks)"
    return None


def fit_then_separate(run: ScenarioRun) -> Verdict:
    return _pass_if(run.error is None, f"fit {run.fit_seconds:.2f}s, separated {N_TEST} mixtures {tuple(run.y.shape)}",
                    run.error or "")


def shape(run: ScenarioRun) -> Verdict:
    found = tuple(run.out.shape)
    return _pass_if(found == run.expected, f"{found} = (N, S, H, W)",
                    f"{found}, expected (N, S, H, W) = {run.expected}")


def dtype(run: ScenarioRun) -> Verdict:
    return _pass_if(run.out.dtype == torch.float32, "float32", f"{run.out.dtype}, expected torch.float32")


def device(run: ScenarioRun) -> Verdict:
    out = run.out
    return _pass_if(out.device.type == run.device.type, f"on {out.device} as given",
                    f"on {out.device}, but the method was given {run.device} (return outputs on ctx.device)")


def finite(run: ScenarioRun) -> Verdict:
    if run.out.device.type != run.device.type:
        return "fail", "not run: the output is on another device (see device)"
    return _pass_if(bool(torch.isfinite(run.out.detach().float().cpu()).all()), "no NaN or inf",
                    "NaN or inf in the output")


def value_range(run: ScenarioRun) -> Verdict:
    if finite(run)[0] != "pass":
        return "fail", "not run: the output is not finite on the given device (see finite)"
    values = run.out.detach().float().cpu()
    low, high = float(values.min()), float(values.max())
    if low >= 0.0 and high <= 1.0:
        return "pass", f"[{low:.3g}, {high:.3g}]"
    return "note", f"[{low:.3g}, {high:.3g}] leaves [0, 1]: the scorer clamps it"


def input_untouched(run: ScenarioRun) -> Verdict:
    return _pass_if(torch.equal(run.y, run.before), "separate leaves y as it was",
                    "separate modified its input y in place")


def training_data_untouched(run: ScenarioRun) -> Verdict:
    """``fit`` must not write into the data it is given: in a run, other cells' data comes from the same images."""
    if run.data_changed is None:
        return "pass", "no training data (the method does not learn)"
    return _pass_if(not run.data_changed, "fit leaves its training images and validation set as they were",
                    f"fit modified {', '.join(run.data_changed)} in place (copy what you change: "
                    "data.images.clone(), or out-of-place operations)")


def batch_independence(run: ScenarioRun) -> Verdict:
    """One mixture alone, the same mixture inside a batch of others, and the batch shuffled."""
    y, out, method = run.y, run.out, run.method
    gen = torch.Generator().manual_seed(run.seed)
    others = y[1:][torch.randperm(len(y) - 1, generator=gen)]
    inside = torch.cat([others[:2], y[:1], others[2:]])
    order = torch.randperm(len(y), generator=gen)
    try:
        alone = method.separate(y[:1].clone())
        among = method.separate(inside)[2:3]
        shuffled = method.separate(y[order])
        gap = max(_gap(alone, among), _gap(out[:1], alone), _gap(shuffled, out[order]))
    except Exception as exc:
        return "fail", f"separate on a sub-batch raised {error_line(exc)}"
    if run.cls.batch_dependent:
        return "note", f"declared batch_dependent = True (max difference {gap:.1e})"
    return _pass_if(gap <= TOLERANCE, f"alone, inside a batch and shuffled agree (max difference {gap:.1e})",
                    f"one mixture alone and inside a batch differ by {gap:.1e} > {TOLERANCE:.0e}: each output must "
                    "depend on its own input only (or declare batch_dependent = True)")


def same_seed(run: ScenarioRun) -> Verdict:
    try:
        gap = _gap(run.out, run.refit_output())
    except Exception as exc:
        return "fail", f"second fit raised {error_line(exc)}"
    what = f"fitted twice with seed {run.seed}: max difference {gap:.1e}"
    return _pass_if(gap <= SAME_SEED_TOLERANCE, what, f"{what} > {SAME_SEED_TOLERANCE:.0e}")


def n_parameters(run: ScenarioRun) -> Verdict:
    count = run.method.n_parameters()
    return _pass_if(isinstance(count, int) and count >= 0, f"{count}",
                    f"n_parameters() returned {count!r}, expected an int ≥ 0")


def kept_state(run: ScenarioRun) -> Verdict:
    """``save_state`` → safetensors bytes → ``load_state`` into a fresh method: the same outputs (kept models)."""
    if not run.cls.can_be_kept():
        return "note", "cannot be kept (no save_state/load_state): `bench run --keep-models` leaves it out"
    from safetensors.torch import load, save

    try:
        state = load(save({name: t.detach().cpu().contiguous() for name, t in run.method.save_state().items()}))
        fresh = run.cls(run.task, **run.params)
        fresh.device = run.device
        fresh.load_state(state)
        fresh.precision_, fresh.history_ = run.method.precision_, run.method.history_
        gap = _gap(fresh.separate(run.y.clone()), run.out)
    except Exception as exc:
        return "fail", f"keeping the fitted state raised {error_line(exc)}"
    return _pass_if(gap == 0.0, f"{len(state)} tensor(s) saved and loaded: the same outputs",
                    f"a method loaded from its saved state separates differently (max difference {gap:.1e})")


def _per_scenario(label: str, body: Callable[[ScenarioRun], Verdict], needs: str | None
                  ) -> Callable[[Subject], list[CheckResult]]:
    """A check over every served scenario. ``needs``: None (any run), 'output' (a tensor) or 'usable' (a tensor
    of the right shape on the right device)."""

    def check(subject: Subject) -> list[CheckResult]:
        runs = subject.runs()
        if not runs:
            return [CheckResult(label, "fail", "not run: the method serves no contract scenario (see scenarios)")]
        results = []
        for run in runs:
            missing = _missing(run, usable=needs == "usable") if needs else None
            status, reason = ("fail", missing) if missing else body(run)
            results.append(CheckResult(f"{run.label}: {label}", status, reason))
        return results

    return check


# (check name, its function over a subject); the name is the pytest id's suffix
SCENARIO_CHECKS: tuple[tuple[str, Callable[[Subject], list[CheckResult]]], ...] = tuple(
    (name.replace(" ", "-").replace(",", ""), _per_scenario(name, body, needs)) for name, body, needs in (
        ("fit then separate", fit_then_separate, None),
        ("shape", shape, "output"),
        ("dtype", dtype, "output"),
        ("device", device, "output"),
        ("finite", finite, "output"),
        ("range", value_range, "output"),
        ("input untouched", input_untouched, "output"),
        ("training data untouched", training_data_untouched, None),
        ("batch independence", batch_independence, "usable"),
        ("same seed, same output", same_seed, "usable"),
        ("n_parameters", n_parameters, "output"),
        ("kept state", kept_state, "usable"),
    ))
