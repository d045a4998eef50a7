"""The method contract: named checks every method, built-in or plugin, must pass to take part in a grid.

Each check is a :class:`Check` with a name (``shape``, ``batch-independence``, …). It runs a method on a tiny task
(synthetic digit-like strokes, a tiny training budget, the single and the dual scenario, CPU by default; see
:mod:`sepbench.contract_runs`) and checks what the runner relies on: declarations and parameter validation,
fit then separate, output shape ``(N, S, H, W)``, dtype float32, the device it was given, finite values (values
outside [0, 1] are only noted: the scorer clamps them), untouched inputs (the test observations, the training
data), batch independence (a method that declares ``batch_dependent = True`` gets a note) and the same output for
the same seed.

- in a test suite, one pytest case per check and method (as scikit-learn's ``parametrize_with_checks``)::

      from sepbench.contract import parametrize_with_checks

      @parametrize_with_checks(["my-method"])
      def test_contract(method, check):
          check(method)

- every check at once, as readable lines: :func:`check_method` (``bench check-method NAME``);
- every check at once in a test: :func:`assert_method_contract`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from sepbench.api import Method, Param, Requirements, Resources
from sepbench.contract_checks import SCENARIO_CHECKS, CheckResult, Subject
from sepbench.contract_runs import SCENARIOS, scenario_task, synthetic_digits
from sepbench.errors import ParameterError, UserError
from sepbench.registry import get_method

__all__ = ["CHECKS", "Check", "CheckResult", "assert_method_contract", "check_method", "contract_params",
           "format_report", "parametrize_with_checks", "synthetic_digits"]


def resolve(method: str | type[Method]) -> type[Method]:
    """A registered method by name (UserError if unknown), or a Method subclass as given."""
    if isinstance(method, str):
        return get_method(method)
    if not (isinstance(method, type) and issubclass(method, Method)):
        raise UserError(f"{method!r} is not a Method subclass")
    return method


def _declarations(subject: Subject) -> list[CheckResult]:
    cls = subject.cls
    kinds = [("requires", Requirements), ("resources", Resources)]
    wrong = [f"{attr} is not a {kind.__name__}" for attr, kind in kinds if not isinstance(getattr(cls, attr), kind)]
    wrong += [f"parameters[{k!r}] is not a Param" for k, v in cls.parameters.items() if not isinstance(v, Param)]
    wrong += [f"{attr} is not a bool" for attr in ("batch_dependent", "supports_bf16")
              if not isinstance(getattr(cls, attr), bool)]
    return [CheckResult("declarations", "pass" if not wrong else "fail",
                        "; ".join(wrong) or "requires, resources, parameters and flags are declared")]


def _parameter_defaults(subject: Subject) -> list[CheckResult]:
    cls = subject.cls
    try:
        defaults = cls.resolve_params({k: v.default for k, v in cls.parameters.items()})
        for label in SCENARIOS:
            if cls.unsupported_reason(scenario_task(label)) is None:
                cls.check_params(defaults, scenario_task(label))
    except (ParameterError, AttributeError, TypeError) as exc:
        return [CheckResult("parameter defaults", "fail", f"a declared default is invalid: {exc}")]
    return [CheckResult("parameter defaults", "pass", f"{len(cls.parameters)} defaults are valid")]


def _rejects_unknown_parameter(subject: Subject) -> list[CheckResult]:
    name, cls = "rejects an unknown parameter", subject.cls
    task = scenario_task("single" if cls.requires.min_observations <= 1 else "dual")
    try:
        cls(task, no_such_parameter=1)
    except ParameterError as exc:
        return [CheckResult(name, "pass", f"ParameterError: {exc}")]
    except Exception as exc:
        return [CheckResult(name, "fail", f"raised {type(exc).__name__} instead of sepbench.ParameterError")]
    return [CheckResult(name, "fail", "accepted no_such_parameter=1 (call Method.__init__, which validates)")]


def _parameters(subject: Subject) -> list[CheckResult]:
    """The parameters the contract runs with (``check_method(..., params=…)``) pass the method's own checks."""
    try:
        subject.resolved_params()
    except ParameterError as exc:
        return [CheckResult("parameters", "fail", str(exc))]
    return [CheckResult("parameters", "pass", f"{subject.params or 'defaults'} pass resolve_params and check_params")]


def _scenarios(subject: Subject) -> list[CheckResult]:
    """A note for each contract scenario the method does not serve; a failure if it serves neither."""
    reasons = {label: subject.cls.unsupported_reason(scenario_task(label)) for label in SCENARIOS}
    results = [CheckResult(f"{label}: scenario", "note", f"not served ({reason})")
               for label, reason in reasons.items() if reason]
    served = [label for label, reason in reasons.items() if not reason]
    if served:
        return results + [CheckResult("scenarios", "pass", f"serves {', '.join(served)}")]
    return results + [CheckResult("scenarios", "fail", f"serves neither contract scenario ({', '.join(SCENARIOS)})")]


@dataclass(frozen=True)
class Check:
    """One named check of the contract. Call it on a method (name or class) to assert it, as a pytest case does."""

    name: str
    run: Callable[[Subject], list[CheckResult]]

    def results(self, method: str | type[Method], params: dict[str, Any] | None = None, device: str = "cpu",
                seed: int = 0) -> list[CheckResult]:
        return self.run(Subject(resolve(method), dict(params or {}), torch.device(device), seed))

    def __call__(self, method: str | type[Method], **kwargs: Any) -> list[CheckResult]:
        results = self.results(method, **kwargs)
        if not all(r.passed for r in results):
            raise AssertionError(format_report(f"method {_name(method)} fails contract check {self.name!r}:",
                                               results))
        return results

    def __repr__(self) -> str:
        return self.name


CHECKS: tuple[Check, ...] = (
    Check("declarations", _declarations),
    Check("parameter-defaults", _parameter_defaults),
    Check("rejects-unknown-parameter", _rejects_unknown_parameter),
    Check("parameters", _parameters),
    Check("scenarios", _scenarios),
    *(Check(name, run) for name, run in SCENARIO_CHECKS),
)


def _name(method: str | type[Method]) -> str:
    """A registered name as given, a class by its own name (stable whether or not it is registered yet)."""
    return method if isinstance(method, str) else method.__qualname__


def contract_params(method: str | type[Method], params: dict[str, Any]) -> dict[str, Any]:
    """``params`` resolved and passed through the method's own checks on every contract scenario it serves
    (a :class:`ParameterError` otherwise: bad input, as a grid's would be)."""
    return Subject(resolve(method), dict(params), torch.device("cpu"), 0).resolved_params()


def check_method(method: str | type[Method], params: dict[str, Any] | None = None, device: str = "cpu",
                 seed: int = 0) -> list[CheckResult]:
    """Run every check on a registered method (by name) or a Method subclass; every check's result, in order."""
    subject = Subject(resolve(method), dict(params or {}), torch.device(device), seed)
    return [result for check in CHECKS for result in check.run(subject)]


def format_report(title: str, results: list[CheckResult]) -> str:
    """The results as a readable block: one line per check, then a verdict."""
    failed = sum(not r.passed for r in results)
    notes = sum(r.status == "note" for r in results)
    verdict = (f"{failed} of {len(results)} checks failed" if failed else f"all {len(results)} checks passed") + (
        f" ({notes} note{'s' if notes != 1 else ''})" if notes else "")
    return "\n".join([title, *("  " + r.line() for r in results), verdict])


def assert_method_contract(method: str | type[Method], **kwargs: Any) -> list[CheckResult]:
    """Run :func:`check_method` and raise an AssertionError listing every check if any fails (for pytest)."""
    results = check_method(method, **kwargs)
    if not all(r.passed for r in results):
        raise AssertionError(format_report(f"method {_name(method)} breaks the method contract:", results))
    return results


def parametrize_with_checks(methods: Iterable[str | type[Method]]) -> Any:
    """A ``pytest.mark.parametrize`` over ``(method, check)``: one case per method and check, with ids
    ``method-check`` (e.g. ``ligt-batch-independence``), so that a failing check names itself in the report."""
    import pytest

    cases = [pytest.param(method, check, id=f"{_name(method)}-{check.name}") for method in methods for check in CHECKS]
    return pytest.mark.parametrize(("method", "check"), cases)
