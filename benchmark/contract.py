"""The method contract: the checks every method, built-in or plugin, must pass to take part in a grid.

It runs a method on a tiny task (synthetic digit-like strokes, a tiny training budget, the single and
the dual scenario, CPU by default) and checks what the runner relies on: parameter validation, fit then
separate, output shape ``(N, S, H, W)``, dtype float32, finite values (values outside [0, 1] are only
noted: the scorer clamps them), outputs on the device the method was given, an untouched input, batch
independence (a method may opt out with ``batch_dependent = True``: reported as a note) and the same
output for the same seed. Use :func:`check_method` (or ``bench check-method NAME``) to see every check,
:func:`assert_method_contract` in a test.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from sepbench.api import FitContext, Method, Param, Requirements, Resources, Task, TrainBudget
from sepbench.datasets.mixtures import TrainingData, make_test_set
from sepbench.errors import ParameterError, UserError
from sepbench.registry import get_method

SCENARIOS: dict[str, tuple[tuple[float, ...], ...]] = {"single": ((1.0, 1.0),), "dual": ((0.7, 0.3), (0.3, 0.7))}
TINY_BUDGET = TrainBudget(mixtures=32, epochs=1, batch_size=16, lr=1e-3)
N_VALIDATION = 16
N_TEST = 6
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


def _check(name: str, ok: bool, reason: str, why_not: str) -> CheckResult:
    return CheckResult(name, "pass" if ok else "fail", reason if ok else why_not)


def _error(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def synthetic_digits(n: int, seed: int = 0, size: int = 28) -> torch.Tensor:
    """``n`` digit-like images ``(n, size, size)`` in [0, 1]: a random 3-stroke polyline, ~3 px wide, centred."""
    gen = torch.Generator().manual_seed(seed)
    points = size * (0.22 + 0.56 * torch.rand(n, 4, 2, generator=gen))  # inside the central box, like MNIST
    start, end = points[:, :-1, None, None, :], points[:, 1:, None, None, :]
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    pixels = torch.stack([rows, cols], dim=-1).float() + 0.5
    direction = end - start
    along = ((pixels - start) * direction).sum(-1) / (direction * direction).sum(-1).clamp_min(1e-6)
    nearest = start + along.clamp(0, 1)[..., None] * direction
    distance = (pixels - nearest).norm(dim=-1).amin(dim=1)
    return (2.0 - distance).clamp(0.0, 1.0)


def resolve(method: str | type[Method]) -> type[Method]:
    """A registered method by name (UserError if unknown), or a Method subclass as given."""
    if isinstance(method, str):
        return get_method(method)
    if not (isinstance(method, type) and issubclass(method, Method)):
        raise UserError(f"{method!r} is not a Method subclass")
    return method


def _declarations(cls: type[Method]) -> list[CheckResult]:
    kinds = [("requires", Requirements), ("resources", Resources)]
    wrong = [f"{attr} is not a {kind.__name__}" for attr, kind in kinds if not isinstance(getattr(cls, attr), kind)]
    wrong += [f"parameters[{k!r}] is not a Param" for k, v in cls.parameters.items() if not isinstance(v, Param)]
    results = [_check("declarations", not wrong, "requires, resources and parameters are declared", "; ".join(wrong))]
    if wrong:
        return results
    try:
        cls.check_params({k: v.default for k, v in cls.parameters.items()})
        results.append(CheckResult("parameter defaults", "pass", f"{len(cls.parameters)} defaults are valid"))
    except ParameterError as exc:
        results.append(CheckResult("parameter defaults", "fail", f"a declared default is invalid: {exc}"))
    return results


def _rejects_unknown_parameter(cls: type[Method]) -> CheckResult:
    name = "rejects an unknown parameter"
    task = Task(SCENARIOS["single"] if cls.requires.min_observations <= 1 else SCENARIOS["dual"], 2, 0.01)
    try:
        cls(task, no_such_parameter=1)
    except ParameterError as exc:
        return CheckResult(name, "pass", f"ParameterError: {exc}")
    except Exception as exc:
        return CheckResult(name, "fail", f"raised {_error(exc)} instead of sepbench.errors.ParameterError")
    return CheckResult(name, "fail", "accepted no_such_parameter=1 (call Method.__init__ or check_params)")


def _fit(cls: type[Method], task: Task, params: dict[str, Any], device: torch.device, seed: int) -> Method:
    """Construct and fit the method as a cell does: seeded, with data only if it learns."""
    method = cls(task, **params)
    data = None
    if cls.requires.needs_training:
        data = TrainingData(synthetic_digits(256, seed=1).to(device), task, TINY_BUDGET.mixtures, seed,
                            n_validation=N_VALIDATION)
    torch.manual_seed(seed)
    method.fit(data, FitContext(device=device, seed=seed, budget=TINY_BUDGET))
    return method


def _compare(name: str, first: torch.Tensor, second: torch.Tensor, tolerance: float, what: str) -> CheckResult:
    gap = float((first.detach().float().cpu() - second.detach().float().cpu()).abs().max())
    return _check(name, gap <= tolerance, f"{what}: max difference {gap:.1e}",
                  f"{what}: max difference {gap:.1e} > {tolerance:.0e}")


def _batch_independence(name: str, cls: type[Method], method: Method, y: torch.Tensor, out: torch.Tensor,
                        seed: int) -> CheckResult:
    """One mixture alone, the same mixture inside a batch of others, and the batch shuffled."""
    gen = torch.Generator().manual_seed(seed)
    others = y[1:][torch.randperm(len(y) - 1, generator=gen)]
    inside = torch.cat([others[:2], y[:1], others[2:]])
    order = torch.randperm(len(y), generator=gen)
    try:
        alone = method.separate(y[:1].clone())
        among = method.separate(inside)[2:3]
        shuffled = method.separate(y[order])
    except Exception as exc:
        return CheckResult(name, "fail", f"separate on a sub-batch raised {_error(exc)}")
    gap = max(float((alone - among).abs().max()), float((out[:1] - alone).abs().max()),
              float((shuffled - out[order]).abs().max()))
    if getattr(cls, "batch_dependent", False):
        return CheckResult(name, "note", f"declared batch_dependent = True (max difference {gap:.1e})")
    return _check(name, gap <= TOLERANCE, f"alone, inside a batch and shuffled agree (max difference {gap:.1e})",
                  f"one mixture alone and inside a batch differ by {gap:.1e} > {TOLERANCE:.0e}: each output must "
                  "depend on its own input only (or declare batch_dependent = True)")


def _outputs(label: str, out: Any, expected: tuple[int, ...], device: torch.device) -> list[CheckResult]:
    if not isinstance(out, torch.Tensor):
        return [CheckResult(f"{label}: output", "fail", f"separate returned {type(out).__name__}, not a Tensor")]
    results = [
        _check(f"{label}: shape", tuple(out.shape) == expected, f"{tuple(out.shape)} = (N, S, H, W)",
               f"{tuple(out.shape)}, expected (N, S, H, W) = {expected}"),
        _check(f"{label}: dtype", out.dtype == torch.float32, "float32", f"{out.dtype}, expected torch.float32"),
        _check(f"{label}: device", out.device.type == device.type, f"on {out.device} as given",
               f"on {out.device}, but the method was given {device} (return outputs on ctx.device)"),
    ]
    if out.device.type != device.type:
        return results
    values = out.detach().float().cpu()
    finite = bool(torch.isfinite(values).all())
    results.append(_check(f"{label}: finite", finite, "no NaN or inf", "NaN or inf in the output"))
    if finite:
        low, high = float(values.min()), float(values.max())
        inside = low >= 0.0 and high <= 1.0
        results.append(CheckResult(f"{label}: range", "pass" if inside else "note",
                                   f"[{low:.3g}, {high:.3g}]" + ("" if inside else
                                                                  " leaves [0, 1]: the scorer clamps it")))
    return results


def _scenario(cls: type[Method], label: str, weights: tuple[tuple[float, ...], ...], params: dict[str, Any],
              device: torch.device, seed: int) -> list[CheckResult]:
    task = Task(weights, downsample=2, sigma=0.01)
    reason = cls.unsupported_reason(task)
    if reason:
        return [CheckResult(f"{label}: scenario", "note", f"not served ({reason})")]
    test = make_test_set(synthetic_digits(64, seed=2), task, N_TEST, f"contract:{label}")
    y = test.y.to(device)
    expected = tuple(test.x.shape)
    started = time.perf_counter()
    try:
        method = _fit(cls, task, params, device, seed)
    except Exception as exc:
        return [CheckResult(f"{label}: fit on tiny data", "fail", f"raised {_error(exc)}")]
    fitted = time.perf_counter() - started
    before = y.clone()
    try:
        out = method.separate(y)
    except Exception as exc:
        return [CheckResult(f"{label}: fit then separate", "fail", f"separate raised {_error(exc)}")]
    results = [CheckResult(f"{label}: fit then separate", "pass",
                           f"fit {fitted:.2f}s, separated {N_TEST} mixtures {tuple(y.shape)}")]
    results += _outputs(label, out, expected, device)
    results.append(_check(f"{label}: input untouched", torch.equal(y, before), "separate leaves y as it was",
                          "separate modified its input y in place"))
    if not all(r.passed for r in results):
        return results
    results.append(_batch_independence(f"{label}: batch independence", cls, method, y, out, seed))
    try:
        again = _fit(cls, task, params, device, seed).separate(y)
        results.append(_compare(f"{label}: same seed, same output", out, again, SAME_SEED_TOLERANCE,
                                "fitted twice with seed " + str(seed)))
    except Exception as exc:
        results.append(CheckResult(f"{label}: same seed, same output", "fail", f"second fit raised {_error(exc)}"))
    count = method.n_parameters()
    results.append(_check(f"{label}: n_parameters", isinstance(count, int) and count >= 0, f"{count}",
                          f"n_parameters() returned {count!r}, expected an int ≥ 0"))
    return results


def check_method(method: str | type[Method], params: dict[str, Any] | None = None, device: str = "cpu",
                 seed: int = 0) -> list[CheckResult]:
    """Run the whole contract on a registered method (by name) or a Method subclass; every check's result."""
    cls = resolve(method)
    torch_device = torch.device(device)
    results = _declarations(cls)
    results.append(_rejects_unknown_parameter(cls))
    try:
        params = cls.check_params(dict(params or {}))
    except ParameterError as exc:
        return results + [CheckResult("parameters", "fail", str(exc))]
    served = []
    for label, weights in SCENARIOS.items():
        part = _scenario(cls, label, weights, params, torch_device, seed)
        served.append(not (len(part) == 1 and part[0].name.endswith(": scenario")))
        results += part
    if not any(served):
        results.append(CheckResult("scenarios", "fail", f"serves neither contract scenario ({', '.join(SCENARIOS)})"))
    return results


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
        name = method if isinstance(method, str) else method.__qualname__
        raise AssertionError(format_report(f"method {name} breaks the method contract:", results))
    return results

