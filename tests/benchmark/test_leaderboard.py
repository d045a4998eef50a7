"""`bench leaderboard RUN...`: entries compared within tracks of equal budget, seeds aggregated, both conventions."""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest
import torch

from sepbench import leaderboard
from sepbench.grid import load_grid, parse_grid
from sepbench.leaderboard import TRACKS, Track, track_name, write_leaderboard
from sepbench.leaderboard.flops import count_training_flops, synthetic_batch, training_flops_per_mixture
from sepbench.leaderboard.page import _fit_minutes
from sepbench.leaderboard.tables import training_flops
from sepbench.plan import plan_grid
from sepbench.registry import get_method
from sepbench.report import write_report
from sepbench.report.load import load_runs
from sepbench.runner import run_grid
from tests.conftest import TINY_GRID, bench_here

GRID = {**TINY_GRID, "scenarios": {"single": TINY_GRID["scenarios"]["single"]}, "noise": [0.01], "seeds": [0, 1],
        "train": {**TINY_GRID["train"], "epochs": 2},
        "methods": ["average", {"method": "fcsae", "params": {"hidden": 64}},
                    {"method": "fcsae", "label": "fcsae-pit", "params": {"hidden": 64, "loss": "pit"}},
                    {"method": "fcsae", "label": "fcsae-long", "params": {"hidden": 64}, "train": {"mixtures": 256}}]}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("leaderboard") / "run"
    assert run_grid(parse_grid(GRID, "tiny.yaml"), out=out, executor="local", progress_stream=io.StringIO()) == 0
    return out


def test_cells_join_the_track_of_their_exact_budget_and_precision():
    facts = {"trains": True, "mixtures_seen": 60_000, "precision": "fp32"}
    assert track_name(facts) == "small"
    assert track_name({**facts, "precision": "bf16"}) == "other (60,000 mixtures, bf16)"
    assert track_name({**facts, "mixtures_seen": 480_000}) == "large"
    assert track_name({**facts, "mixtures_seen": 480_000, "precision": "bf16"}) == "other (480,000 mixtures, bf16)"
    assert track_name({**facts, "trains": False}) is None  # a reference in every track


def test_fit_time_is_core_seconds_on_a_cpu_and_gpu_seconds_on_a_gpu():
    meta = {"config": {"budget": {"mixtures": 100, "epochs": 2}}, "precision": "fp32", "fit_seconds": 30.0,
            "threads": 4, "device": "cpu", "device_name": "CPU: test"}
    on_cpu = leaderboard.cell_facts(meta)
    assert on_cpu["fit_core_seconds"] == 120.0 and math.isnan(on_cpu["fit_gpu_seconds"])
    on_gpu = leaderboard.cell_facts({**meta, "device": "cuda:0", "device_name": "NVIDIA H200"})
    assert on_gpu["fit_gpu_seconds"] == 30.0 and math.isnan(on_gpu["fit_core_seconds"])
    assert on_gpu["device_name"] == "NVIDIA H200" and on_gpu["mixtures_seen"] == 200
    row = pd.Series({"mixtures_seen": 200, "fit_core_seconds": math.nan, "fit_gpu_seconds": 30.0})
    assert _fit_minutes(row) == "0.5 GPU-min"
    assert _fit_minutes(row.replace({math.nan: 120.0})) == "2.0; 0.5 GPU-min"  # seeds on both kinds of device


def test_the_packaged_track_grids_train_exactly_their_tracks_budget():
    for name, track in (("leaderboard-small", "small"), ("leaderboard-large", "large")):
        plan = plan_grid(load_grid(name))
        trained = [c for c in plan.cells if c.budget is not None]
        spec = next(t for t in TRACKS if t.name == track)
        assert trained and all(c.budget.mixtures * c.budget.epochs == spec.mixtures_seen and
                               c.budget.precision == spec.precision for c in trained)
        assert {c.seed for c in trained} == {0, 1, 2}  # three training seeds for every entry


def test_tracks_seeds_conventions_and_ranks(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setattr(leaderboard.tracks, "TRACKS", (Track("tiny", 256, "fp32", "the tiny entries"),))
    page = write_leaderboard([tiny_run], tmp_path / "lb")
    table = pd.read_csv(tmp_path / "lb" / "leaderboard.csv")
    assert set(table["track"]) == {"tiny", "other (512 mixtures, fp32)"}
    tiny = table[table["track"] == "tiny"].set_index("label")
    assert set(tiny.index) == {"average", "fcsae", "fcsae-pit"}  # the reference stands in every track
    assert set(table.loc[table["track"] != "tiny", "label"]) == {"average", "fcsae-long"}
    assert tiny.loc["fcsae", "n_seeds"] == 2 and tiny.loc["average", "n_seeds"] == 1
    assert tiny.loc["fcsae", "mse_seed_std"] > 0 and tiny.loc["fcsae", "mse_ci2_low"] < tiny.loc["fcsae", "mse_mean"]
    # the two-level percentile bootstrap beside the t interval (CSV only), for entries with several seeds
    assert tiny.loc["fcsae", "mse_boot2_low"] < tiny.loc["fcsae", "mse_mean"] < tiny.loc["fcsae", "mse_boot2_high"]
    assert pd.isna(tiny.loc["average", "mse_boot2_low"])
    # both conventions: the PSNR of the mean MSE never exceeds the mean per-image PSNR (Jensen), and both SSIMs
    assert (tiny["psnr_of_mean_mse"] <= tiny["psnr_mean"] + 1e-9).all()
    assert tiny["ssim_gauss_mean"].notna().all() and (tiny["ssim_gauss_mean"] != tiny["ssim_mean"]).all()
    assert tiny.loc["fcsae", "best_val_loss"] > 0 and pd.isna(tiny.loc["average", "best_val_loss"])
    assert tiny.loc["fcsae", "mixtures_seen"] == 256 and tiny.loc["fcsae", "n_parameters"] > 0
    assert tiny.loc["fcsae", "devices"].startswith("CPU") and tiny.loc["fcsae", "fit_core_seconds"] > 0
    assert (tiny["rank_low"] <= tiny["rank_high"]).all() and tiny["rank_low"].min() == 1
    tests = pd.read_csv(tmp_path / "lb" / "tests-tiny.csv")
    assert {"p_t", "p_holm", "outcome"} <= set(tests.columns) and (tests["p_holm"] >= tests["p_t"] - 1e-12).all()
    text = page.read_text()
    assert "## Track tiny: 256 training mixtures seen, fp32" in text
    assert "## Track other (512 mixtures, fp32)" in text and "1 seed" not in text.split("## Track other")[0]
    assert "trains nothing" in text and "PSNR of mean MSE" in text and "SSIM Gaussian" in text
    # training FLOPs of the budget, counted on the meta device: per mixture as a real CPU step counts them, × 256
    task = plan_grid(parse_grid(GRID, "tiny.yaml")).cells[1].task
    per_mixture = training_flops_per_mixture("fcsae", {"hidden": 64}, task, 64)
    on_cpu = count_training_flops(get_method("fcsae")(task, hidden=64), synthetic_batch(task, 64), "cpu")
    assert per_mixture == on_cpu > 0
    assert tiny.loc["fcsae", "train_tflop"] == pytest.approx(per_mixture * 256 / 1e12, rel=1e-12)
    assert math.isnan(tiny.loc["average", "train_tflop"])
    # the same page as self-contained HTML
    html = (tmp_path / "lb" / "leaderboard.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "Track tiny: 256 training mixtures seen, fp32" in html
    assert html.count("<table>") == text.count("| rank | entry |") == 2


def test_flops_are_counted_only_while_the_method_code_is_the_cells(tiny_run):
    (run,) = load_runs([tiny_run])
    cell_id = next(c for c, m in run.meta.items() if m["config"]["label"] == "fcsae")
    assert training_flops(run, cell_id) > 0
    run.meta[cell_id]["provenance"]["code"] = "0" * 16  # trained by other code: today's network is not its network
    assert math.isnan(training_flops(run, cell_id))


def test_flops_of_a_known_network_are_counted_exactly():
    class Linear:  # 20 → 30 → 10 per mixture: forward 2·(600 + 300); backward: the weights' gradients 2·(600 + 300)
        # and the hidden layer's gradient 2·300 (the observation needs none)
        def build_network(self):
            return torch.nn.Sequential(torch.nn.Linear(20, 30, bias=False), torch.nn.Linear(30, 10, bias=False))

        def training_loss(self, net, batch):
            return net(batch.y.reshape(len(batch.y), -1)[:, :20]).pow(2).mean()

        def predict(self, net, y):
            return y

    batch = synthetic_batch(plan_grid(parse_grid(GRID, "tiny.yaml")).cells[1].task, 8)
    assert count_training_flops(Linear(), batch) == 4 * 900 + 2 * 300
    assert training_flops_per_mixture("average", {}, plan_grid(parse_grid(GRID, "t.yaml")).cells[0].task, 64) is None


def test_the_report_has_a_leaderboard_section_only_for_track_budgets(tiny_run, tmp_path, monkeypatch):
    plain = write_report(tiny_run, out=tmp_path / "plain").with_suffix(".md").read_text()
    assert "## Leaderboard" not in plain  # every trained entry is on another budget: the Summary says it all
    monkeypatch.setattr(leaderboard.tracks, "TRACKS", (Track("tiny", 256, "fp32", "the tiny entries"),))
    text = write_report(tiny_run, out=tmp_path / "tracked").with_suffix(".md").read_text()
    section = text.split("## Leaderboard", 1)[1].split("\n## ", 1)[0]
    assert "### Track tiny: 256 training mixtures seen, fp32" in section and "#### single · σ = 0.01 · mnist" in section
    assert "fcsae-pit" in section and "fcsae-long" not in section  # other budgets stay out of the section
    html = (tmp_path / "tracked" / "report.html").read_text()
    assert '<h2 id="leaderboard">Leaderboard</h2>' in html and "<h4>single · σ = 0.01 · mnist</h4>" in html


def test_runs_on_other_test_mixtures_are_never_ranked_together(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setattr(leaderboard.tracks, "TRACKS", (Track("tiny", 256, "fp32", "the tiny entries"),))
    one_seed = {**GRID, "seeds": [0]}
    same = {**one_seed, "methods": [{"method": "fcsae", "label": "fcsae-narrow", "params": {"hidden": 32}}]}
    other = {**one_seed, "test": {"mixtures": 30}, "methods": ["average", GRID["methods"][1]]}  # 30 test mixtures
    for name, grid in (("same", same), ("other", other)):
        assert run_grid(parse_grid(grid, f"{name}.yaml"), out=tmp_path / name, executor="local",
                        progress_stream=io.StringIO()) == 0
    write_leaderboard([tiny_run, tmp_path / "same", tmp_path / "other"], tmp_path / "lb")
    table = pd.read_csv(tmp_path / "lb" / "leaderboard.csv")
    tiny = table[table["track"] == "tiny"]
    by_setting = {scenario: set(part["run"] + ": " + part["label"]) for scenario, part in tiny.groupby("scenario")}
    assert by_setting == {  # the run on the same 40 test mixtures joins the table; the one on 30 gets its own
        "single": {"run: average", "run: fcsae", "run: fcsae-pit", "same: fcsae-narrow"},
        "single · test set 2": {"other: average", "other: fcsae"}}
    assert tiny.groupby("scenario")["rank_low"].min().eq(1).all()  # each ranked within itself
    tests = pd.read_csv(tmp_path / "lb" / "tests-tiny.csv")
    assert not (tests["a"].str.startswith("other:") & ~tests["b"].str.startswith("other:")).any()
    assert "### single · test set 2 · σ = 0.01 · mnist" in (tmp_path / "lb" / "leaderboard.md").read_text()


def test_a_reference_several_runs_scored_stands_once_per_track_from_the_tracks_own_run(tiny_run, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.setattr(leaderboard.tracks, "TRACKS", (Track("tiny", 256, "fp32", "the tiny entries"),
                                                       Track("short", 128, "fp32", "shorter")))
    short = {**GRID, "seeds": [0], "methods": ["average", {"method": "fcsae", "label": "fcsae-short",
                                                           "params": {"hidden": 64}, "train": {"mixtures": 64}}]}
    assert run_grid(parse_grid(short, "short.yaml"), out=tmp_path / "short", executor="local",
                    progress_stream=io.StringIO()) == 0
    write_leaderboard([tiny_run, tmp_path / "short"], tmp_path / "lb")
    table = pd.read_csv(tmp_path / "lb" / "leaderboard.csv")
    entries = {track: sorted(part["run"] + ": " + part["label"]) for track, part in table.groupby("track")}
    assert entries == {"tiny": ["run: average", "run: fcsae", "run: fcsae-pit"],  # one `average`, the track's own
                       "short": ["short: average", "short: fcsae-short"],
                       "other (512 mixtures, fp32)": ["run: average", "run: fcsae-long"]}
    averages = table[table["label"] == "average"]
    assert averages["mse_mean"].nunique() == 1 and (averages["rank_low"] == averages["rank_high"]).all()
    tests = pd.read_csv(tmp_path / "lb" / "tests-tiny.csv")
    assert not (tests["a"].str.contains("short") | tests["b"].str.contains("short")).any()


def test_bad_input_is_one_line_and_exit_status_2(tmp_path, tiny_run):
    absent = bench_here("leaderboard", str(tmp_path / "absent"), cwd=tmp_path)
    assert absent.returncode == 2 and absent.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'absent'}: no such run directory"]
    (tmp_path / "file").write_text("x")
    blocked = bench_here("leaderboard", str(tiny_run), "--out", str(tmp_path / "file"), cwd=tmp_path)
    assert blocked.returncode == 2 and len(blocked.stderr.strip().splitlines()) == 1, blocked.stderr
    assert bench_here("leaderboard", cwd=tmp_path).returncode == 2  # no run named
    # a glob over a folder of runs names its pages too: files are skipped with a line each, not an error
    named = bench_here("leaderboard", str(tmp_path / "file"), str(tiny_run), "--out", str(tmp_path / "lb"),
                       cwd=tmp_path)
    assert named.returncode == 0 and named.stderr.strip().splitlines() == [
        f"skipped {tmp_path / 'file'}: a file, not a run directory"], named.stderr
    only = bench_here("leaderboard", str(tmp_path / "file"), cwd=tmp_path)
    assert only.returncode == 2 and only.stderr.strip().splitlines()[-1] == "error: name at least one run directory"
