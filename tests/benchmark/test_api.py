"""The method API is explicit: the base class declares everything the engine reads, with defaults."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sepbench import Method, Task, TorchMethod
from sepbench import plan as plan_module
from sepbench.api import TrainBudget
from sepbench.datasets import task as task_module
from sepbench.plan import estimate_seconds
from sepbench.precision import EMULATED_BF16_SPEED, cpu_has_bf16


def test_the_base_class_declares_what_the_engine_reads():
    assert Method.batch_dependent is False and Method.supports_bf16 is False
    assert tuple(Method.history_) == () and Method.precision_ is None
    assert TorchMethod.supports_bf16 is True and TorchMethod.batch_dependent is False
    assert Task is task_module.Task  # one Task, where data and methods both import it


def test_a_minimal_method_has_the_declared_learned_state():
    class Halves(Method):
        def separate(self, y):
            return y

    method = Halves(Task(((1.0, 1.0),), 2, 0.01))
    assert list(method.history_) == [] and method.precision_ is None


def test_the_planner_imports_no_method_module():
    probe = ("import sys\n"
             "import sepbench.plan, sepbench.grid\n"
             "print(sorted(m for m in sys.modules if m.startswith('sepbench.methods')))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_run_time_estimate_reads_the_declared_bf16_flag():
    class Learner(Method):
        cpu_mixtures_per_s = 100.0
        cpu_bf16_speedup = 2.0

    class Bf16Learner(Learner):
        supports_bf16 = True

    budget = TrainBudget(mixtures=1000, epochs=2, precision="auto")
    plain, fast = estimate_seconds(Learner, budget, 0), estimate_seconds(Bf16Learner, budget, 0)
    assert plain == 2.0 + 20.0
    assert fast == (2.0 + 10.0 if cpu_has_bf16() else plain)


@pytest.mark.parametrize("native", [True, False])
def test_run_time_estimate_counts_emulated_bf16(monkeypatch, native):
    class Learner(Method):
        cpu_mixtures_per_s = 100.0
        cpu_bf16_speedup = 2.0
        supports_bf16 = True

    monkeypatch.setattr(plan_module, "cpu_has_bf16", lambda: native)
    seconds = {p: estimate_seconds(Learner, TrainBudget(mixtures=1000, epochs=2, precision=p), 0)
               for p in ("fp32", "auto", "bf16")}
    assert seconds["fp32"] == 2.0 + 20.0
    if native:  # bf16 instructions: 'auto' and 'bf16' both train at the declared speed-up
        assert seconds["auto"] == seconds["bf16"] == 2.0 + 10.0
    else:  # 'auto' resolves to fp32; an explicit 'bf16' is emulated, about ten times slower
        assert seconds["auto"] == seconds["fp32"] and seconds["bf16"] == pytest.approx(2.0 + 20.0 / EMULATED_BF16_SPEED)


def test_run_time_estimate_follows_a_methods_parameters():
    class Scaled(Method):
        cpu_mixtures_per_s = 100.0

        @classmethod
        def cpu_rate(cls, params):
            return cls.cpu_mixtures_per_s * 16 / params.get("width", 16)

    budget = TrainBudget(mixtures=1000, epochs=2)
    assert estimate_seconds(Scaled, budget, 0, {"width": 16}) == 2.0 + 20.0
    assert estimate_seconds(Scaled, budget, 0, {"width": 64}) == 2.0 + 80.0
    assert estimate_seconds(Scaled, None, 0, {"width": 64}) == 2.0  # a method that does not train
