"""Rerunning into a run directory through the real command line: stale cells (a plugin's code changed),
damaged files (truncated Parquet, garbage JSON, truncated npz), a grid edited between runs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import TINY_GRID, bench, bench_here

PLUGIN_INIT = "from halves_demo.method import Halves  # noqa: F401\n"
PLUGIN_METHOD = """\
import torch.nn.functional as F

from sepbench import Method, register_method

SCALE = {scale}


@register_method("halves")
class Halves(Method):
    def separate(self, y):
        up = F.interpolate(y[:, :1], scale_factor=self.task.downsample)
        return (up * SCALE).expand(-1, self.task.n_sources, -1, -1).contiguous()
"""
GRID = {**TINY_GRID, "scenarios": {"single": TINY_GRID["scenarios"]["single"]}, "noise": [0.01, 0.1],
        "test": {"mixtures": 20}, "methods": ["average", "halves"], "plugins": ["halves_demo"]}


def write_plugin(root: Path, scale: float) -> None:
    package = root / "plugins" / "halves_demo"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(PLUGIN_INIT)
    (package / "method.py").write_text(PLUGIN_METHOD.format(scale=scale))


def run(root: Path, grid: dict, *extra: str):
    path = root / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return bench("run", "--grid", str(path), "--out", str(root / "run"), "--executor", "local", *extra, cwd=root,
                 env={"PYTHONPATH": str(root / "plugins")})


def records(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (out / "cells").glob("*.json")}


def test_a_plugin_code_change_reruns_its_cells_only(tmp_path: Path) -> None:
    write_plugin(tmp_path, 0.5)
    first = run(tmp_path, GRID)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "run"
    before = records(out)
    assert len(before) == 4
    origin = next(r["provenance"] for r in before.values() if r["config"]["method"] == "halves")
    assert origin["code_files"] == ["halves_demo", "halves_demo.method"]
    assert origin["data"] == next(iter(before.values()))["config"]["data"] and origin["device"] == "cpu"
    assert origin["torch"] and origin["sepbench"]

    same = run(tmp_path, GRID)  # nothing changed: nothing runs
    assert same.returncode == 0 and "0 to run" in same.stderr and "stale" not in same.stderr

    write_plugin(tmp_path, 0.4)  # the researcher edits the method
    second = run(tmp_path, GRID)
    assert second.returncode == 0, second.stderr
    assert "2 already done, 2 to run" in second.stderr
    new_code = None
    for line in second.stderr.splitlines():
        if "stale:" in line:
            assert "2 cell(s) of halves: method code " + origin["code"] in line and "rerun" in line
            new_code = line.split(" → ")[1].split(":")[0]
    after = records(out)
    for cell_id, record in after.items():
        rerun = record["config"]["method"] == "halves"
        assert (record["started"] != before[cell_id]["started"]) == rerun
        if rerun:
            assert record["provenance"]["code"] == new_code != origin["code"]

    # --keep-stale keeps them, says so, and the report marks them; a new σ runs with the new code: mixed code
    write_plugin(tmp_path, 0.3)
    kept = run(tmp_path, {**GRID, "noise": [0.01, 0.1, 0.2]}, "--keep-stale")
    assert kept.returncode == 0, kept.stderr
    assert "4 already done, 2 to run" in kept.stderr and "kept and marked stale (--keep-stale)" in kept.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["stale_kept"]) == 2
    report = bench_here("report", str(out), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    page = (out / "report.md").read_text()
    assert page.count("stale (kept with --keep-stale): halves") == 2
    assert "mixed: halves: cells from different method code" in page
    assert "mixed: average" not in page


RECOMMENTED_INIT = ('"""The halves demo, now documented."""\n\n'
                    'from halves_demo.method import Halves  # noqa: F401  re-export\n')
RECOMMENTED_METHOD = """\
\"\"\"Halves: each source is half the upsampled first observation (a docstring added later).\"\"\"
import torch.nn.functional as F

from sepbench import Method, register_method

SCALE = 0.5  # the share of the observation each source gets


@register_method("halves")
class Halves(Method):
    \"\"\"Both sources alike.\"\"\"

    def separate(self, y):
        \"\"\"Upsample, scale, repeat.\"\"\"
        # a comment, and the same code laid out otherwise
        up = F.interpolate(y[:, :1],
                           scale_factor=self.task.downsample)
        return (up*SCALE).expand(-1, self.task.n_sources,
                                 -1, -1).contiguous()
"""


def test_comments_docstrings_and_layout_keep_a_plugins_cells_and_a_one_character_code_edit_reruns_them(
        tmp_path: Path) -> None:
    write_plugin(tmp_path, 0.5)
    assert run(tmp_path, GRID).returncode == 0
    out = tmp_path / "run"
    before = records(out)
    package = tmp_path / "plugins" / "halves_demo"
    (package / "__init__.py").write_text(RECOMMENTED_INIT)
    (package / "method.py").write_text(RECOMMENTED_METHOD)
    same = run(tmp_path, GRID)
    assert same.returncode == 0, same.stderr
    assert "4 already done, 0 to run" in same.stderr and "stale" not in same.stderr
    assert records(out) == before  # not one cell rewritten

    (package / "method.py").write_text(RECOMMENTED_METHOD.replace("(up*SCALE)", "(up/SCALE)"))  # one character
    edited = run(tmp_path, GRID)
    assert edited.returncode == 0, edited.stderr
    assert "2 already done, 2 to run" in edited.stderr
    assert any("stale: 2 cell(s) of halves: method code" in line for line in edited.stderr.splitlines())
    after = records(out)
    for cell_id, record in after.items():
        rerun = record["config"]["method"] == "halves"
        assert (record["provenance"]["code"] != before[cell_id]["provenance"]["code"]) == rerun
        assert (record["started"] != before[cell_id]["started"]) == rerun


def test_damaged_files_are_set_aside_reported_and_recomputed(tmp_path: Path) -> None:
    write_plugin(tmp_path, 0.5)
    grid = {**GRID, "methods": ["average"], "plugins": [], "noise": [0.01, 0.05, 0.1, 0.2]}
    assert run(tmp_path, grid).returncode == 0
    out = tmp_path / "run"
    by_sigma = {r["config"]["sigma"]: cell_id for cell_id, r in records(out).items()}
    rows_before = {i: pd.read_parquet(out / "cells" / f"{i}.parquet") for i in by_sigma.values()}
    parquet, garbage, npz = (by_sigma[s] for s in (0.01, 0.05, 0.1))
    path = out / "cells" / f"{parquet}.parquet"
    path.write_bytes(path.read_bytes()[:-100])  # truncated Parquet
    (out / "cells" / f"{garbage}.json").write_bytes(b"\x00\xff{not json")  # garbage JSON
    path = out / "examples" / f"{npz}.npz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated examples

    report = bench_here("report", str(out), cwd=tmp_path)  # the intact cell is reported, the damaged ones listed
    assert report.returncode == 0, report.stderr
    assert "Traceback" not in report.stderr
    named = [line.split("damaged cell ")[1].split()[0] for line in report.stderr.splitlines() if "damaged cell" in line]
    assert sorted(named) == sorted([parquet, garbage, npz])
    summary = pd.read_csv(out / "summary.csv")
    assert summary["sigma"].tolist() == [0.2]
    page = (out / "report.md").read_text()
    assert page.count("damaged: average") == 3

    rerun = run(tmp_path, grid)
    assert rerun.returncode == 0, rerun.stderr
    assert "1 already done, 3 to run" in rerun.stderr
    damaged_lines = [line for line in rerun.stderr.splitlines() if "damaged: cell" in line]
    assert len(damaged_lines) == 3 and all("moved to cells/damaged/" in line for line in damaged_lines)
    assert any(f"{parquet}.parquet does not match its checksum" in line for line in damaged_lines)
    assert any(f"{garbage}.json: not valid JSON" in line for line in damaged_lines)
    assert any(f"{npz}.npz does not match its checksum" in line for line in damaged_lines)
    aside = sorted(p.name.split("-", 1)[1] for p in (out / "cells" / "damaged").iterdir())
    assert aside == sorted([f"{parquet}.json", f"{parquet}.parquet", f"{parquet}.npz", f"{garbage}.json",
                            f"{garbage}.parquet", f"{garbage}.npz", f"{npz}.json", f"{npz}.parquet", f"{npz}.npz"])
    for cell_id, rows in rows_before.items():  # recomputed: the same numbers
        pd.testing.assert_frame_equal(pd.read_parquet(out / "cells" / f"{cell_id}.parquet"), rows)
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(d["id"] for d in manifest["damaged"]) == sorted([parquet, garbage, npz])


def test_an_edited_grid_reuses_shared_cells_and_keeps_the_rest_out_of_the_report(tmp_path: Path) -> None:
    write_plugin(tmp_path, 0.5)
    grid = {**GRID, "methods": ["average"], "plugins": []}
    assert run(tmp_path, grid).returncode == 0
    out = tmp_path / "run"
    first = records(out)
    edited = run(tmp_path, {**grid, "noise": [0.01, 0.2]})  # σ 0.1 dropped, σ 0.2 added
    assert edited.returncode == 0, edited.stderr
    assert "1 already done, 1 to run" in edited.stderr
    assert "1 cell(s) of an earlier version of the grid are kept" in edited.stderr
    assert set(first) < set(records(out))  # nothing removed
    manifest = json.loads((out / "manifest.json").read_text())
    assert [h["grid"]["noise"] for h in manifest["history"]] == [[0.01, 0.1], [0.01, 0.2]]
    dropped = next(i for i, r in first.items() if r["config"]["sigma"] == 0.1)
    assert [c["id"] for c in manifest["not_in_grid"]] == [dropped]
    assert bench_here("report", str(out), cwd=tmp_path).returncode == 0
    assert sorted(pd.read_csv(out / "summary.csv")["sigma"]) == [0.01, 0.2]
    assert f"(cell {dropped})" in (out / "report.md").read_text()


@pytest.fixture(scope="module")
def wrong_bytes_dir(tmp_path_factory) -> Path:
    """The four MNIST files at their true size, one pixel of the test images changed."""
    from sepbench.datasets.mnist import load_mnist

    directory = tmp_path_factory.mktemp("idx")
    images = load_mnist()
    for name, tensor, scale in (("train-images-idx3-ubyte", images.train, 255),
                                ("train-labels-idx1-ubyte", images.train_labels, 1),
                                ("t10k-images-idx3-ubyte", images.test, 255),
                                ("t10k-labels-idx1-ubyte", images.test_labels, 1)):
        tensor = tensor[:, 0] if tensor.dim() == 4 else tensor  # images (N, 1, 28, 28) → IDX (N, 28, 28)
        array = (tensor * scale).round().numpy().astype("uint8")
        header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
        data = bytearray(header + array.tobytes())
        if name.startswith("t10k-images"):
            data[-1] ^= 0x01
        (directory / name).write_bytes(bytes(data))
    return directory


def test_a_data_file_with_the_right_size_and_wrong_bytes_is_refused(tmp_path: Path, wrong_bytes_dir: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({**GRID, "methods": ["average"], "plugins": []}))
    result = bench_here("run", "--grid", str(path), "--out", str(tmp_path / "run"), "--executor", "local",
                        "--data-dir", str(wrong_bytes_dir), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "t10k-images-idx3-ubyte: not the standard MNIST file" in lines[0]
    assert not (tmp_path / "run" / "cells").exists()


SCALED_METHOD = """\
import torch.nn.functional as F

from sepbench import Method, Param, register_method


@register_method("halves")
class Halves(Method):
    parameters = {{"scale": Param({default}), "shift": Param(0.0)}}

    def separate(self, y):
        up = F.interpolate(y[:, :1], scale_factor=self.task.downsample)
        return (up * self.params["scale"] + self.params["shift"]).expand(-1, self.task.n_sources, -1, -1).contiguous()
"""


def test_a_changed_parameter_default_is_named_not_called_a_grid_change(tmp_path: Path) -> None:
    """The same grid (one history entry) after the plugin's default for `scale` changed: the message names the
    parameter and says it was its default, and the grid's own `shift` is told apart from it."""
    write_plugin(tmp_path, 0.5)
    method = tmp_path / "plugins" / "halves_demo" / "method.py"
    method.write_text(SCALED_METHOD.format(default=0.5))
    grid = {**GRID, "noise": [0.01], "methods": ["average", {"method": "halves", "params": {"shift": 0.0}}]}
    assert run(tmp_path, grid).returncode == 0
    out = tmp_path / "run"
    old = next(i for i, r in records(out).items() if r["config"]["method"] == "halves")
    method.write_text(SCALED_METHOD.format(default=0.25))
    rerun = run(tmp_path, grid)
    assert rerun.returncode == 0, rerun.stderr
    assert "1 already done, 1 to run" in rerun.stderr
    line = next(line for line in rerun.stderr.splitlines() if "no longer match the plan" in line)
    assert ("1 earlier cell(s) of halves no longer match the plan: parameter scale 0.5 → 0.25 (the method's "
            "default changed; the grid does not set it)") in line
    assert "earlier version of the grid" not in rerun.stderr and "shift" not in line
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["history"]) == 1  # the grid did not change
    assert manifest["not_in_grid"][0]["id"] == old
    assert manifest["not_in_grid"][0]["changed"] == [
        "parameter scale 0.5 → 0.25 (the method's default changed; the grid does not set it)"]
    # now the grid changes the parameter it sets: named as the grid's
    third = run(tmp_path, {**grid, "methods": ["average", {"method": "halves", "params": {"shift": 0.1}}]})
    assert "parameter shift 0.0 → 0.1 (set in the grid)" in third.stderr, third.stderr


def test_a_cell_recorded_before_test_fingerprints_is_named_when_reused_and_its_pairs_are_explained(
        tmp_path: Path) -> None:
    """A run resumed after the upgrade that added ``test_fingerprint``: its old cells are reused, but no report pairs
    them with the cells run now (their test keys differ); the run says so, and so does the report's paired table."""
    grid = {**GRID, "noise": [0.01], "methods": ["average"], "plugins": []}
    assert run(tmp_path, grid).returncode == 0
    out = tmp_path / "run"
    (old_id, record), = records(out).items()
    del record["test_fingerprint"]  # as sepbench wrote it before 2026-12-04
    (out / "cells" / f"{old_id}.json").write_text(json.dumps(record))
    more = run(tmp_path, {**grid, "methods": ["average", {"method": "average", "label": "average-2"}]})
    assert more.returncode == 0, more.stderr
    assert "1 already done, 1 to run" in more.stderr
    assert ("1 finished cell(s) of average were recorded before cells carried the digest of their test mixtures "
            "(test_fingerprint): reports will not pair them with the cells run now") in more.stderr
    assert bench_here("report", str(out), cwd=tmp_path).returncode == 0
    page = (out / "report.md").read_text()
    assert "| average |  | not paired |" in page and "*not paired: the two entries were not scored on the same" in page
    again = run(tmp_path, {**grid, "methods": ["average", {"method": "average", "label": "average-2"}]})
    assert "test_fingerprint" not in again.stderr  # nothing runs now: nothing to pair it with
