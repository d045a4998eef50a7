"""Training precision: 'auto' | 'fp32' | 'bf16', resolved at fit time and recorded; bf16 detection."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import sepbench.precision as precision_module
from sepbench import TorchMethod
from sepbench.api import FitContext, TrainBudget
from sepbench.precision import autocast, bf16_supported, cpu_has_bf16, resolve_precision
from sepbench.registry import available_methods


def _ctx(precision: str, mixtures: int = 64) -> FitContext:
    return FitContext(device=torch.device("cpu"), seed=0,
                      budget=TrainBudget(mixtures=mixtures, epochs=1, batch_size=32, precision=precision))


class _Recorder(nn.Module):
    """A small linear separator that records the dtype of its output in training and in separation."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(196, 2 * 784)
        self.dtypes: list[torch.dtype] = []

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        out = self.linear(y.flatten(1))
        self.dtypes.append(out.dtype)
        return torch.sigmoid(out).unflatten(1, (2, 28, 28))


class _RecorderMethod(TorchMethod):
    def build_network(self) -> nn.Module:
        return _Recorder()


class _NoBf16Method(_RecorderMethod):
    supports_bf16 = False


def test_resolve_precision() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"  # explicit bf16 is honoured, native or not
    assert resolve_precision("auto", cpu) == ("bf16" if bf16_supported(cpu) else "fp32")
    for requested in ("auto", "fp32", "bf16"):
        assert resolve_precision(requested, cpu, allowed=False) == "fp32"
    with pytest.raises(ValueError, match="fp16"):
        resolve_precision("fp16", cpu)


def test_auto_follows_the_hardware(monkeypatch) -> None:
    monkeypatch.setattr(precision_module, "bf16_supported", lambda device: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision_module, "bf16_supported", lambda device: False)
    assert resolve_precision("auto", "cpu") == "fp32"


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="reads Linux CPU flags")
def test_cpu_bf16_detection_reads_the_cpu_flags(tmp_path: Path) -> None:
    detect = cpu_has_bf16.__wrapped__  # uncached, with a made-up cpuinfo
    native = tmp_path / "native"
    native.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n")
    amx = tmp_path / "amx"
    amx.write_text("flags\t\t: fpu avx512f amx_tile amx_bf16\n")
    arm = tmp_path / "arm"
    arm.write_text("Features\t: fp asimd bf16 i8mm\n")
    without = tmp_path / "without"
    without.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512vl\n")
    expected = torch.backends.mkldnn.is_available()
    assert detect(str(native)) is expected and detect(str(amx)) is expected and detect(str(arm)) is expected
    assert detect(str(without)) is False
    assert detect(str(tmp_path / "missing")) is False
    assert bf16_supported("cpu") is cpu_has_bf16()


def test_autocast_is_a_no_op_for_fp32() -> None:
    linear = nn.Linear(4, 4)
    with autocast(torch.device("cpu"), "fp32"):
        assert linear(torch.ones(1, 4)).dtype == torch.float32
    with autocast(torch.device("cpu"), "bf16"):
        assert linear(torch.ones(1, 4)).dtype == torch.bfloat16


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_and_separation_run_in_the_resolved_precision(precision, single_task, make_data) -> None:
    method = _RecorderMethod(single_task)
    data = make_data(single_task, n_mixtures=64)
    method.fit(data, _ctx(precision))
    assert method.precision_ == precision
    steps = 2  # 64 mixtures at batch 32; then the validation pass
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    assert method.net.dtypes[:steps] == [dtype] * steps
    assert set(method.net.dtypes[steps:]) == {torch.float32}  # validation in fp32 at every precision
    assert all(p.dtype == torch.float32 for p in method.net.parameters())  # fp32 master weights
    method.net.dtypes.clear()
    out = method.separate(torch.rand(5, 1, 14, 14))
    assert method.net.dtypes == [dtype]  # one chunk
    assert out.dtype == torch.float32 and out.shape == (5, 2, 28, 28)


def test_auto_is_resolved_at_fit_time_and_recorded(single_task, make_data, monkeypatch) -> None:
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(precision_module, "bf16_supported", lambda device, native=native: native)
        method = _RecorderMethod(single_task)
        assert method.precision_ == "fp32"  # before fit: separate runs in fp32
        method.fit(make_data(single_task, n_mixtures=32), _ctx("auto", mixtures=32))
        assert method.precision_ == expected


def test_a_method_without_bf16_support_trains_in_fp32(single_task, make_data, monkeypatch) -> None:
    monkeypatch.setattr(precision_module, "bf16_supported", lambda device: True)
    for requested in ("auto", "bf16"):
        method = _NoBf16Method(single_task)
        method.fit(make_data(single_task, n_mixtures=32), _ctx(requested, mixtures=32))
        assert method.precision_ == "fp32" and set(method.net.dtypes) == {torch.float32}


def test_every_learned_method_declares_bf16_support() -> None:
    learned = {name: cls for name, cls in available_methods().items() if issubclass(cls, TorchMethod)}
    assert {"fcsae", "convsep", "ligt"} <= set(learned)
    assert all(isinstance(cls.supports_bf16, bool) for cls in learned.values())


@pytest.mark.parametrize("name", ["fcsae", "convsep", "ligt"])
def test_bf16_training_is_deterministic_and_its_separations_batch_independent(name, single_task, make_data) -> None:
    """Same seed, same device → same numbers in bf16 too; bf16 separation runs every chunk at the full chunk size
    (the last padded), so a mixture alone, inside a batch, or at another position gets the same output (without
    the padding, bf16 kernels chosen by batch size moved LiGT's outputs by ~2e-3); close to fp32 separation."""
    tiny = {"fcsae": {"hidden": 32}, "convsep": {}, "ligt": {"ff": 32}}[name]
    cls = available_methods()[name]
    y = torch.rand(100, 1, 14, 14, generator=torch.Generator().manual_seed(4)) * 2  # crosses a chunk boundary
    runs = []
    for _ in range(2):
        method = cls(single_task, **tiny)
        method.fit(make_data(single_task, n_mixtures=32), _ctx("bf16", mixtures=32))
        assert method.precision_ == "bf16"
        runs.append(method.separate(y))
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    for i in (0, 5, 63, 64, 99):
        assert float((method.separate(y[i:i + 1]) - runs[1][i:i + 1]).abs().max()) <= 1e-6
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(5))
    assert float((method.separate(y[order]) - runs[1][order]).abs().max()) <= 1e-6
    method.precision_ = "fp32"
    assert float((method.separate(y) - runs[1]).abs().mean()) < 1e-2  # bf16 rounding only


def test_run_cell_records_the_resolved_precision() -> None:
    from sepbench.cell import run_cell
    from sepbench.grid import parse_grid
    from sepbench.plan import plan_grid

    grid = parse_grid({
        "name": "precision", "dataset": {"name": "mnist", "train_size": 500, "test_size": 100},
        "scenarios": {"single": {"weights": [[1, 1]], "downsample": 2}}, "noise": [0.01], "seeds": [0],
        "train": {"mixtures": 64, "epochs": 1, "batch_size": 32, "precision": "auto"}, "test": {"mixtures": 20},
        "methods": ["average", {"method": "fcsae", "params": {"hidden": 16}}],
    })
    results = {cell.method: run_cell(cell, device=torch.device("cpu")) for cell in plan_grid(grid).cells}
    assert results["fcsae"].status == "done", results["fcsae"].meta.get("error")
    assert results["fcsae"].meta["precision"] == resolve_precision("auto", "cpu")
    assert results["fcsae"].meta["config"]["budget"]["precision"] == "auto"  # the request stays in the config
    assert results["average"].meta["precision"] is None


@pytest.mark.parametrize("native", [False, True])
def test_a_run_says_when_its_bf16_cells_are_emulated(tmp_path, monkeypatch, native) -> None:
    import io

    import sepbench.runner as runner_module
    from sepbench.grid import parse_grid
    from sepbench.runner import run_grid

    monkeypatch.setattr(runner_module, "cpu_has_bf16", lambda: native)
    monkeypatch.setattr(runner_module.torch.cuda, "is_available", lambda: False)  # the CPU's estimate is printed
    grid = parse_grid({
        "name": "emulated", "dataset": {"name": "mnist", "train_size": 500, "test_size": 100},
        "scenarios": {"single": {"weights": [[1, 1]], "downsample": 2}}, "noise": [0.01], "seeds": [0],
        "train": {"mixtures": 64, "epochs": 1, "batch_size": 32}, "test": {"mixtures": 20},
        "methods": ["average", {"method": "fcsae", "params": {"hidden": 16}},
                    *({"method": "fcsae", "label": f"fcsae-{p}", "params": {"hidden": 16}, "train": {"precision": p}}
                      for p in ("bf16", "auto"))],
    })
    stream = io.StringIO()
    assert run_grid(grid, out=tmp_path / "run", executor="local", progress_stream=stream) == 0
    said = [line for line in stream.getvalue().splitlines() if "only emulates" in line]
    if native:
        assert said == []
    else:  # one line, counting only the cell that asked for bf16 ('auto' resolves to fp32 here)
        assert said == ["  1 cells train in bf16, which this CPU only emulates (no AVX512-BF16, AMX-BF16 or Arm "
                        "BF16): about 10× slower than fp32, as the estimate counts; a GPU or a CPU with native bf16 "
                        "runs them at full speed"]


def test_a_cell_trains_and_separates_without_tf32_and_restores_the_flags(monkeypatch) -> None:
    """PyTorch lets cuDNN convolutions use TF32 by default: inside a cell 'fp32' is full fp32 on a GPU too."""
    from sepbench.api import _REGISTRY, Method, Requirements
    from sepbench.cell import run_cell
    from sepbench.grid import parse_grid
    from sepbench.plan import plan_grid
    from sepbench.precision import no_tf32

    seen: list[tuple[str, bool, bool]] = []

    def flags(step: str) -> None:
        seen.append((step, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))

    class Probe(Method):
        requires = Requirements(needs_training=True)

        def fit(self, data, ctx):
            flags("fit")

        def separate(self, y):
            flags("separate")
            return torch.zeros(len(y), 2, 28, 28)

    monkeypatch.setitem(_REGISTRY, "tf32-probe", Probe)
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32  # torch's own setters, not
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # monkeypatch's (no delattr)
    try:
        grid = parse_grid({
            "name": "tf32", "dataset": {"name": "mnist", "train_size": 500, "test_size": 100},
            "scenarios": {"single": {"weights": [[1, 1]], "downsample": 2}}, "noise": [0.01], "seeds": [0],
            "train": {"mixtures": 64, "epochs": 1, "batch_size": 32}, "test": {"mixtures": 20},
            "methods": ["tf32-probe"],
        })
        (cell,) = plan_grid(grid).cells
        assert run_cell(cell, device=torch.device("cpu")).status == "done"
        assert seen == [("fit", False, False), ("separate", False, False)]
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32  # as they were
        with pytest.raises(RuntimeError), no_tf32():  # restored after an error too
            raise RuntimeError
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
