"""Kept models: a run stores each fitted method (safetensors + model card), a later run asks for the missing ones,
and load_model gives back the very estimates the run scored; damaged or edited files are refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from sepbench import Method, load_model, register_method
from sepbench.cell import load_sources
from sepbench.datasets import dataset_key
from sepbench.datasets.mixtures import make_test_set
from sepbench.errors import GridError, UserError
from sepbench.grid import parse_grid
from sepbench.metrics import score
from sepbench.plan import plan_grid
from sepbench.provenance import code_fingerprint
from sepbench.registry import get_method, methods_table
from tests.conftest import bench_here
from tests.models.conftest import KEPT_GRID, ONE_THREAD


@pytest.fixture
def one_thread():
    """The run's cells ran on one torch thread: so do the in-process checks (the same kernels, the same bits)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_models_asked_for_after_a_run_rerun_only_the_cells_without_one(kept_run):
    _, out, first, second, before, after = kept_run
    assert "2 to run" in first.stderr
    assert sorted(p.name for p in (out / "models").iterdir()) == sorted(
        f"{after[label]['id']}.{ext}" for label in ("average", "unet") for ext in ("json", "safetensors"))
    assert "model" not in before["average"]["files"] and "model" in before["unet"]["files"]
    # --keep-models: the U-Net's cell is reused, average's reruns, saying why; no cell id changes
    assert "1 already done, 1 to run" in second.stderr
    assert "model: 1 finished cell(s) of average: no kept model, and models are asked for: rerun" in second.stderr
    assert after["unet"]["started"] == before["unet"]["started"]
    assert after["average"]["started"] != before["average"]["started"]
    assert {label: r["id"] for label, r in after.items()} == {label: r["id"] for label, r in before.items()}
    assert set(after["average"]["files"]) == {"rows", "examples", "model", "card"}


def test_the_card_says_what_made_the_model(kept_run):
    _, out, _, _, _, after = kept_run
    record = after["unet"]
    card = json.loads((out / "models" / f"{record['id']}.json").read_text())
    assert card["entry"]["method"] == "unet" and card["entry"]["label"] == "unet"
    assert card["entry"]["params"] == record["config"]["params"] and card["entry"]["params"]["width"] == 8
    assert card["entry"]["train"]["mixtures"] == 1500 and card["entry"]["train"]["epochs"] == 2
    assert card["task"] == {"weights": [[1.0, 1.0]], "downsample": 2, "sigma": 0.01, "source_shape": [28, 28],
                            "superpose": "sum", "channels": 1, "noise_model": "gaussian", "photons": 0.0,
                            "blur": "none", "blur_width": 0.0, "blur_size": 0}
    assert card["code"] == record["provenance"] and card["code"]["code"] == code_fingerprint(get_method("unet"))[0]
    assert [h["epoch"] for h in card["history"]] == [1, 2] and card["history"] == record["history"]
    assert card["scores"]["mse"] == pytest.approx(record["mse"], rel=1e-12)
    assert card["scores"]["ssim"] == pytest.approx(record["ssim"], rel=1e-12)
    assert card["precision"] == "fp32" and card["n_parameters"] == record["n_parameters"]
    assert card["weights"]["sha256"] == record["files"]["model"]


def test_a_loaded_model_gives_the_runs_estimates_bit_for_bit(kept_run, one_thread):
    _, out, _, _, _, after = kept_run
    record = after["unet"]
    method = load_model(out, "unet", scenario="single", sigma=0.01, seed=0)
    assert type(method).__name__ == "UNetSeparator" and method.history_ == record["history"]
    sources = load_sources()
    test = make_test_set(sources.test[:500], method.task, 20, dataset_key("mnist", 5000, 500))
    estimates = torch.nan_to_num(method.separate(test.y), nan=0.0).clamp(0, 1)
    examples = np.load(out / "examples" / f"{record['id']}.npz")
    assert np.array_equal(test.y[:5].numpy(), examples["y"])
    assert np.array_equal(estimates[:5].numpy(), examples["estimates"])  # fp32, bit for bit
    assert float(score(estimates, test.x)["mse"].mean()) == pytest.approx(record["mse"], rel=1e-12)


def test_a_kept_model_loads_in_a_fresh_process(kept_run, tmp_path):
    """No object of the run: only the run directory, sepbench and the registry."""
    _, out, _, _, _, after = kept_run
    script = tmp_path / "use.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        import numpy as np, torch
        import sepbench

        method = sepbench.load_model({str(out)!r}, "unet")
        examples = np.load({str(out / "examples" / (after["unet"]["id"] + ".npz"))!r})
        # the first five test mixtures, padded to the cell's 20 with the rest of its test set regenerated
        from sepbench.cell import load_sources
        from sepbench.datasets import dataset_key
        from sepbench.datasets.mixtures import make_test_set
        test = make_test_set(load_sources().test[:500], method.task, 20, dataset_key("mnist", 5000, 500))
        estimates = torch.nan_to_num(method.separate(test.y), nan=0.0).clamp(0, 1)[:5].numpy()
        print(json.dumps({{"same": bool(np.array_equal(estimates, examples["estimates"])),
                          "method": type(method).__name__, "params": method.params}}))
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, **ONE_THREAD}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {"same": True, "method": "UNetSeparator", "params": after["unet"]["config"]["params"]}


def test_without_a_label_the_best_kept_entry_is_loaded(kept_run):
    _, out, _, _, _, after = kept_run
    assert after["unet"]["mse"] < after["average"]["mse"]
    assert type(load_model(out)).__name__ == "UNetSeparator"
    assert type(load_model(out, "average")).__name__ == "Average"
    with pytest.raises(UserError, match=r"no entry 'nope' \(entries: average, unet\)"):
        load_model(out, "nope")
    with pytest.raises(UserError, match=r"no kept model for σ 0.1 \(kept: 0.01\)"):
        load_model(out, "unet", sigma=0.1)


@pytest.mark.parametrize("target", ["weights", "card"])
def test_a_tampered_weight_file_or_card_is_refused_in_one_line(kept_run, tmp_path, target):
    _, out, _, _, _, after = kept_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    cell_id = after["unet"]["id"]
    if target == "weights":
        path = copy / "models" / f"{cell_id}.safetensors"
        data = bytearray(path.read_bytes())
        data[-100] ^= 0x01  # one bit of one weight
        path.write_bytes(bytes(data))
        expected = "does not match its model card"
    else:
        path = copy / "models" / f"{cell_id}.json"
        card = json.loads(path.read_text())
        card["entry"]["params"]["width"] = 16  # an edited card would build another network
        path.write_text(json.dumps(card))
        expected = "does not match the checksum its cell record holds"
    with pytest.raises(UserError, match=expected):
        load_model(copy, "unet")
    observation = tmp_path / "y.npy"
    np.save(observation, np.zeros((1, 14, 14), np.float32))
    result = bench_here("separate", str(copy), str(observation), "--entry", "unet", "--out", str(tmp_path / "sep"),
                   cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and expected in result.stderr and "refused" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "sep").exists()


def test_a_damaged_model_is_made_again_when_models_are_asked_for(kept_run, tmp_path):
    root, out, _, _, _, after = kept_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    (copy / "models" / f"{after['average']['id']}.safetensors").write_bytes(b"not weights")
    result = bench_here("run", "--grid", str(root / "kept.yaml"), "--out", str(copy), "--executor", "local",
                        "--keep-models", cwd=tmp_path, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    assert "1 already done, 1 to run" in result.stderr
    assert "of average: its kept model's" in result.stderr and "does not match its checksum" in result.stderr
    assert type(load_model(copy, "average")).__name__ == "Average"


class Unkeepable(Method):
    """A method without the kept-model hooks."""

    def separate(self, y: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(y), 2, 28, 28)


def test_a_method_without_the_hooks_cannot_be_kept_and_says_so(clean_registry):
    register_method("unkeepable")(Unkeepable)
    assert not Unkeepable.can_be_kept() and get_method("unet").can_be_kept() and get_method("ica").can_be_kept()
    table = methods_table().splitlines()
    assert "KEPT" in table[0]
    assert "cannot be kept" in next(line for line in table if line.startswith("unkeepable"))
    assert "cannot be kept" not in next(line for line in table if line.startswith("average "))
    grid = {**KEPT_GRID, "methods": ["average", {"method": "unkeepable", "train": {"keep_model": True}}]}
    with pytest.raises(UserError, match=r"g.yaml: methods: unkeepable: train.keep_model: method 'unkeepable' "
                                        "cannot be kept"):
        plan_grid(parse_grid(grid, "g.yaml"))
    plan = plan_grid(parse_grid({**grid, "methods": ["average", "unkeepable"]}, "g.yaml"), keep_models=True)
    assert plan.not_kept == (("unkeepable", "method 'unkeepable' cannot be kept (it does not implement "
                                            "Method.save_state/load_state)"),)
    assert {c.label: c.keep_model for c in plan.cells} == {"average": True, "unkeepable": False}


def test_keep_model_changes_no_cell_id_and_must_be_a_boolean():
    plain = plan_grid(parse_grid({**KEPT_GRID, "methods": ["average", {"method": "unet", "params": {"width": 8}}]}))
    kept = plan_grid(parse_grid(KEPT_GRID), keep_models=True)
    assert [c.id for c in plain.cells] == [c.id for c in kept.cells]
    assert [c.keep_model for c in plain.cells] == [False, False] and [c.keep_model for c in kept.cells] == [True] * 2
    everywhere = parse_grid({**KEPT_GRID, "train": {**KEPT_GRID["train"], "keep_model": True}})
    assert everywhere.keep_models and all(c.keep_model for c in plan_grid(everywhere).cells)
    assert parse_grid(everywhere.to_dict()) == everywhere  # the resolved grid.yaml reads back the same
    with pytest.raises(GridError, match=r"methods\[0\].train.keep_model: expected bool, got 'yes'"):
        parse_grid({**KEPT_GRID, "methods": [{"method": "unet", "train": {"keep_model": "yes"}}]}, "g.yaml")


def test_the_method_contract_checks_that_a_kept_state_separates_the_same():
    from sepbench.contract import check_method
    from sepbench.methods.average import Average
    from sepbench.methods.fcsae import FCSAE

    class Forgetful(FCSAE):
        """Loads a fresh network and ignores the saved state."""

        def load_state(self, state):
            self.net = self.make_network(self.device)

    def kept(cls, params=None) -> dict[str, tuple[str, str]]:
        return {r.name: (r.status, r.reason) for r in check_method(cls, params=params or {})
                if r.name.endswith("kept state")}

    same = ("pass", "6 tensor(s) saved and loaded: the same outputs")  # 3 linear layers: weights and biases
    assert kept(FCSAE, {"hidden": 16}) == {"single: kept state": same, "dual: kept state": same}
    status, reason = kept(Forgetful, {"hidden": 16})["single: kept state"]
    assert status == "fail" and reason.startswith("a method loaded from its saved state separates differently")
    class NoHooks(Average):  # average's separation, without the hooks
        save_state = Method.save_state
        load_state = Method.load_state

    assert kept(NoHooks)["single: kept state"] == (
        "note", "cannot be kept (no save_state/load_state): `bench run --keep-models` leaves it out")
