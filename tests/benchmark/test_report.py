"""`bench report` on a tiny real run: page, figures, statistics checked against pandas and scipy directly."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import wilcoxon

from sepbench.grid import parse_grid
from sepbench.report import write_comparison, write_report
from sepbench.report.load import combine, load_run
from sepbench.report.stats import recognition_ceiling
from sepbench.report.summary import bootstrap_ci
from sepbench.runner import run_grid
from tests.conftest import TINY_GRID, bench_here

GRID = {**TINY_GRID, "name": "report-tiny", "noise": [0.01, 0.1], "test": {"mixtures": 40},
        "methods": ["average", {"method": "fcsae", "params": {"hidden": 64}, "train": {"epochs": 3}}, "ica"]}
LABELS = ("average", "fcsae", "ica")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny real run (10 cells) and its report, shared by the tests that only read them."""
    out = tmp_path_factory.mktemp("report") / "tiny"
    assert run_grid(parse_grid(GRID), out=out, executor="local") == 0
    write_report(out)
    return out


@pytest.fixture(scope="module")
def parquet_rows(run_dir: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted((run_dir / "cells").glob("*.parquet"))],
                     ignore_index=True)


def test_page_embeds_every_figure_and_names_every_method(run_dir):
    html = (run_dir / "report.html").read_text()
    pngs = sorted((run_dir / "figures").glob("*.png"))
    names = {p.name for p in pngs}
    assert {"box_mse.png", "box_ssim.png", "box_psnr.png", "vs_sigma.png", "wilcoxon.png", "recognised.png",
            "cost.png", "learning_curves.png"} <= names
    assert len([n for n in names if n.startswith("examples_") and n.endswith("_ref.png")]) == 4  # every setting
    assert html.count("data:image/png;base64,") == len(pngs)
    assert not re.search(r"""(src|href)=["']?(https?:|//|figures/)""", html)  # nothing outside the file
    markdown = (run_dir / "report.md").read_text()
    assert all(f"(figures/{name})" in markdown for name in names)
    for label in LABELS:
        assert f"<td class=\"l\">{label}</td>" in html and f"| {label} |" in markdown
    assert "Incomplete" not in html


def test_summary_equals_pandas_aggregation_of_the_rows(run_dir, parquet_rows):
    summary = pd.read_csv(run_dir / "summary.csv")
    assert len(summary) == 10 and set(summary["label"]) == set(LABELS)
    grouped = parquet_rows.groupby(["label", "scenario", "sigma"])
    for metric in ("mse", "psnr", "ssim"):
        column = grouped[metric]
        expected = {"mean": column.mean(), "median": column.median(), "std": column.std(),
                    "iqr": column.quantile(0.75) - column.quantile(0.25)}
        for _, row in summary.iterrows():
            key = (row.label, row.scenario, row.sigma)
            assert row.n == grouped.size()[key] == 80
            for stat, values in expected.items():
                assert row[f"{metric}_{stat}"] == pytest.approx(values[key], rel=1e-9, abs=1e-12), (metric, stat)
            assert row[f"{metric}_ci_low"] < row[f"{metric}_mean"] < row[f"{metric}_ci_high"]


def test_cost_table_names_each_methods_precision(run_dir):
    cost = pd.read_csv(run_dir / "cost.csv", keep_default_na=False).set_index("label")
    assert cost.loc["fcsae", "precision"] == "fp32"  # the grid's default; 'auto' would record what it resolved to
    assert cost.loc["average", "precision"] == cost.loc["ica", "precision"] == "–"  # no network
    html = (run_dir / "report.html").read_text()
    assert "<th>device</th><th>precision</th>" in html and "<td>fp32</td>" in html


def test_learning_curves_are_the_cells_histories_and_name_what_still_falls(run_dir):
    curves = pd.read_csv(run_dir / "learning_curves.csv")
    assert set(curves["label"]) == {"fcsae"}  # average and ica do not train
    html = (run_dir / "report.html").read_text()
    assert '<h2 id="learning-curves">Learning curves</h2>' in html
    falling = []
    for path in sorted((run_dir / "cells").glob("*.json")):
        meta = json.loads(path.read_text())
        if meta["config"]["label"] != "fcsae":
            continue
        history = meta["history"]
        config = meta["config"]
        mine = curves[(curves["scenario"] == config["scenario"]["name"]) & (curves["sigma"] == config["sigma"])]
        assert list(mine["epoch"]) == [1, 2, 3]
        np.testing.assert_allclose(mine["val_loss"], [r["val_loss"] for r in history], rtol=1e-12)
        np.testing.assert_allclose(mine["elapsed"], np.cumsum([r["seconds"] for r in history]), rtol=1e-9)
        still_falling = history[-1]["val_loss"] < (1 - 1e-3) * history[-2]["val_loss"]
        falling.append(still_falling)
        row = (f'<td class="l">fcsae</td><td class="l">{config["scenario"]["name"]}</td><td>{config["sigma"]:g}'
               f"</td><td>0</td><td>3</td>")
        assert row in html
        status = html.split(row, 1)[1].split("</tr>", 1)[0]
        assert status.endswith("<td>not converged</td>" if still_falling else "<td>converged</td>")
    assert len(falling) == 4
    assert ("Not converged: the validation loss still fell" in html) == any(falling)


def test_convergence_needs_a_last_epoch_that_no_longer_falls():
    from sepbench.report.curves import convergence

    def cell(seed: int, losses: list[float]) -> pd.DataFrame:
        return pd.DataFrame({"entry": "m", "scenario": "single", "sigma": 0.01, "seed": seed,
                             "epoch": range(1, len(losses) + 1), "val_loss": losses,
                             "elapsed": np.arange(1, len(losses) + 1) * 2.0})

    status = convergence(pd.concat([cell(0, [0.05, 0.03, 0.02]), cell(1, [0.05, 0.03, 0.0300]),
                                    cell(2, [0.05, 0.02, 0.021]), cell(3, [0.05]),
                                    cell(4, [0.05, 0.03, 0.02999])]))
    assert list(status["converged"]) == [False, True, True, False, True]  # 0.03 % fall: within tolerance
    assert list(status["epochs"]) == [3, 3, 3, 1, 3]
    assert status["best_val_loss"].tolist() == [0.02, 0.03, 0.02, 0.05, 0.02999]
    assert status["seconds"].tolist() == [6.0, 6.0, 6.0, 2.0, 6.0]


def test_bootstrap_is_seeded_vectorised_and_right_sized():
    values = np.random.default_rng(1).normal(2.0, 3.0, size=5000)
    low, high = bootstrap_ci(values)
    assert (low, high) == bootstrap_ci(values)  # same seed, same interval
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    assert low < values.mean() < high
    assert (high - low) / 2 == pytest.approx(half, rel=0.1)
    # chunking the resamples changes nothing
    chunked = bootstrap_ci(values, chunk_elements=len(values) * 7)
    np.testing.assert_allclose(chunked, (low, high))


def test_wilcoxon_matrix_equals_scipy_on_one_pair(run_dir, parquet_rows):
    tests = pd.read_csv(run_dir / "wilcoxon.csv")
    part = parquet_rows[(parquet_rows["scenario"] == "dual") & (parquet_rows["sigma"] == 0.1)]
    per_mixture = part.groupby(["label", "mixture"])["mse"].mean()
    a, b = per_mixture["average"], per_mixture["ica"]
    direct = wilcoxon(a.to_numpy(), b.loc[a.index].to_numpy())
    row = tests[(tests.scenario == "dual") & (tests.sigma == 0.1) & (tests.a == "average") & (tests.b == "ica")]
    assert len(row) == 1
    assert row.p.iloc[0] == pytest.approx(direct.pvalue, rel=1e-12)
    assert row.statistic.iloc[0] == pytest.approx(direct.statistic)
    median = np.median(a.to_numpy() - b.loc[a.index].to_numpy())
    expected = 0 if direct.pvalue >= 0.01 else (1 if median < 0 else -1)
    assert row.outcome.iloc[0] == expected
    back = tests[(tests.scenario == "dual") & (tests.sigma == 0.1) & (tests.a == "ica") & (tests.b == "average")]
    assert back.outcome.iloc[0] == -expected and back.p.iloc[0] == row.p.iloc[0]
    assert set(tests.outcome.dropna()) <= {-1.0, 0.0, 1.0}
    # ica never ran on "single": no test there
    assert not ((tests.scenario == "single") & ((tests.a == "ica") | (tests.b == "ica"))).any()


def test_recognisability_ceiling_equals_the_rate_computed_directly(run_dir, parquet_rows):
    from sepbench.cell import load_sources
    from sepbench.datasets.mixtures import fixed_test_pairs, make_test_set
    from sepbench.plan import plan_grid
    from sepbench.recognise import load_classifier

    cell = plan_grid(parse_grid(GRID)).cells[0]
    sources = load_sources()
    images = sources.test[:cell.dataset.test_size]
    test = make_test_set(images, cell.task, cell.test_mixtures, cell.dataset.key)
    pairs = fixed_test_pairs(len(images), cell.test_mixtures, 2, cell.dataset.key)
    labels = sources.test_labels[:cell.dataset.test_size][pairs].numpy()
    with torch.no_grad():
        predicted = load_classifier().net(test.x.reshape(-1, 1, 28, 28)).argmax(1).reshape(-1, 2).numpy()
    direct = float(np.mean([sorted(p) == sorted(t) for p, t in zip(predicted, labels, strict=True)]))

    run = load_run(run_dir)
    ceiling, info = recognition_ceiling([run], combine([run]))
    assert list(ceiling.values()) == [pytest.approx(direct)]
    assert info["mnist"]["test_accuracy"] > 0.98  # per dataset: the classifier of each dataset the run is on
    assert parquet_rows["recognised"].notna().all()
    html = (run_dir / "report.html").read_text()
    assert f"<td>{direct:.3f}</td>" in html and "ground truth (ceiling)" in html
    # and the cells' own flags agree with the classifier on their stored example outputs
    meta = json.loads(next((run_dir / "cells").glob("*.json")).read_text())
    with np.load(run_dir / "examples" / f"{meta['id']}.npz") as npz:
        outputs = npz["estimates"]
    predicted = load_classifier().predict(torch.from_numpy(outputs))
    flags = [sorted(p) == sorted(t) for p, t in zip(predicted, labels[:len(outputs)], strict=True)]
    cell_rows = parquet_rows[(parquet_rows["cell"] == meta["id"]) & (parquet_rows["source"] == 0)]
    assert cell_rows.sort_values("mixture")["recognised"].to_numpy()[:len(outputs)].tolist() == flags


def _break(run_dir: Path, target: Path) -> tuple[dict, dict]:
    """Copy the run; make one cell failed and another missing, as an interrupted or failing run leaves them."""
    shutil.copytree(run_dir, target)
    cells = json.loads((target / "manifest.json").read_text())["cells"]
    failed, missing = cells[1], cells[-1]
    meta = json.loads((target / "cells" / f"{failed['id']}.json").read_text())
    meta.update(status="failed", error="RuntimeError: CUDA out of memory")
    (target / "cells" / f"{failed['id']}.json").write_text(json.dumps(meta))
    (target / "cells" / f"{failed['id']}.parquet").unlink()
    for suffix in (".json", ".parquet"):
        (target / "cells" / f"{missing['id']}{suffix}").unlink()
    return failed, missing


def test_failed_and_missing_cells_are_listed_at_the_top(run_dir, tmp_path):
    failed, missing = _break(run_dir, tmp_path / "broken")
    page = write_report(tmp_path / "broken")
    html = page.read_text()
    warning = html.index("Incomplete: 2 of 10 planned cells")
    assert warning < html.index("At a glance")
    assert f"failed: {failed['label']} · {failed['scenario']} · σ={failed['sigma']:g} · seed 0" in html
    assert "RuntimeError: CUDA out of memory" in html
    assert f"missing: {missing['label']} · {missing['scenario']} · σ={missing['sigma']:g}" in html
    summary = pd.read_csv(tmp_path / "broken" / "summary.csv")
    assert len(summary) == 8
    assert html.count("data:image/png;base64,") == len(list((tmp_path / "broken" / "figures").glob("*.png")))


def test_two_runs_side_by_side_through_the_cli(run_dir, tmp_path):
    _break(run_dir, tmp_path / "other")
    out = tmp_path / "cmp"
    result = bench_here("report", str(run_dir), str(tmp_path / "other"), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {out / 'report.html'}"
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["run"]) == {"tiny", "other"} and len(summary) == 18
    html = (out / "report.html").read_text()
    assert "tiny: fcsae" in html and "other: ica" in html and "Incomplete: 2 of 20" in html
    assert html.count("data:image/png;base64,") == len(list((out / "figures").glob("*.png")))
    tests = pd.read_csv(out / "wilcoxon.csv")  # the same test set: the two runs' methods are paired too
    pair = tests[(tests.a == "tiny: average") & (tests.b == "other: average")]
    assert len(pair) and (pair.p == 1.0).all()  # identical results: no difference


def _one_line_exit_2(result, fragment: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr


def test_bad_input_is_one_line_and_exit_2(run_dir, tmp_path):
    _one_line_exit_2(bench_here("report", str(tmp_path / "absent"), cwd=tmp_path), "no such run directory")
    (tmp_path / "plain").mkdir()
    _one_line_exit_2(bench_here("report", str(tmp_path / "plain"), cwd=tmp_path), "not a run directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(run_dir / "manifest.json", empty / "manifest.json")
    _one_line_exit_2(bench_here("report", str(empty), cwd=tmp_path), "no finished cell to report on")
    with pytest.raises(Exception, match="no finished cell"):
        write_comparison([run_dir, empty])


def test_cells_are_paired_only_on_the_same_observations():
    """Two runs may give one scenario name different forward models: the test key (what pairs mixtures across
    entries and runs) then differs, while the ceiling key (the test sources and S) stays the same."""
    from sepbench.report.load import RunData

    def config(scenario, sigma=0.01, pairs="random"):
        return {"config": {"scenario": {"name": "single", **scenario}, "sigma": sigma, "test_mixtures": 40,
                           "test_pairs": pairs, "dataset": {"name": "mnist", "train_size": 2000, "test_size": 500}}}

    base = {"weights": [[1.0, 1.0]], "downsample": 2}
    run = RunData("r", None, {}, pd.DataFrame(), {
        "a": config(base), "b": config(base), "weights": config({**base, "weights": [[0.7, 0.3]]}),
        "blur": config({**base, "blur": {"psf": "random", "size": 5}}), "sigma": config(base, sigma=0.1),
        "own-sigmas": config({**base, "sigma": [0.01, 0.1]}), "paper": config(base, pairs="paper")})
    keys = {c: run.test_key(c) for c in run.meta}
    assert keys["a"] == keys["b"] == keys["own-sigmas"]  # a scenario's σ list is not its forward model
    assert len({keys[c] for c in ("a", "weights", "blur", "sigma", "paper")}) == 5
    assert run.ceiling_key("a") == run.ceiling_key("weights") == run.ceiling_key("sigma")
    assert run.ceiling_key("a") != run.ceiling_key("paper")
    # a cell that records its test mixtures' digest pairs only with cells of the same digest
    digests = RunData("r", None, {}, pd.DataFrame(), {
        "new": {**config(base), "test_fingerprint": "aaaa"}, "same": {**config(base), "test_fingerprint": "aaaa"},
        "other": {**config(base), "test_fingerprint": "bbbb"}, "old": config(base)})
    printed = {c: digests.test_key(c) for c in digests.meta}
    assert printed["new"] == printed["same"] and printed["old"] == keys["a"]
    assert len({printed["new"], printed["other"], printed["old"]}) == 3
