"""``bench report``: a run directory (or several, side by side) → report.html, report.md, CSVs, figures/*.png.

One run: written into the run directory (or ``out``). Several runs: one comparison page, written to
``out`` or, by default, to ``<first run>/comparison/`` so that the first run's own report stays as it is.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from sepbench.errors import UserError
from sepbench.report import content, curves, examples, figures, fonts
from sepbench.report.fixed_order import fixed_order_blocks, fixed_order_table
from sepbench.report.load import RunData, combine, datasets_of, entry_names, entry_order, load_run, load_runs
from sepbench.report.page import Block, Figure, render_html, render_markdown
from sepbench.report.seeds import seed_columns, seed_tests
from sepbench.report.seeds.blocks import seed_test_blocks, several_seeds
from sepbench.report.stats import ALPHA, outcome_matrix, pairwise_wilcoxon, recognition_ceiling
from sepbench.report.summary import MAIN_METRIC, METRICS, cost_table, ranked, summarise

RECOGNISED = ["recognised_rate", "recognised_ci_low", "recognised_ci_high"]

__all__ = ["is_current", "load_run", "summarise", "write_comparison", "write_report"]
INPUTS_STAMP = "report.inputs"  # in a run directory: the fingerprint of the cells its report was made from
TABLES = ("summary.csv", "wilcoxon.csv", "cost.csv", "learning_curves.csv", "recognition_ceiling.csv",
          "fixed_order.csv", "seed_tests.csv")
FIGURE_PATTERNS = ("box_*.png", "vs_sigma.png", "recognised.png", "examples_*.png", "wilcoxon.png", "cost.png",
                   "learning_curves.png")


def _clean(directory: Path) -> None:
    """Remove the figures an earlier report wrote, so that the page and figures/ always agree."""
    for pattern in FIGURE_PATTERNS:
        for path in directory.glob(pattern):
            path.unlink()


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in text)


def build(runs: Sequence[RunData], out: Path, data_dir: str | Path | None = None) -> Path:
    """Compute every table and figure of ``runs`` and write the report into ``out``; returns report.html.
    Glyphs no font has are named in one logged warning (fonts.py), not one per glyph and figure."""
    with fonts.covered_glyphs():
        return _build(runs, out, data_dir)


def _build(runs: Sequence[RunData], out: Path, data_dir: str | Path | None) -> Path:
    several = len(runs) > 1
    rows = combine(runs)
    entries = entry_order(rows)
    out.mkdir(parents=True, exist_ok=True)
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    _clean(fig_dir)

    summary = summarise(rows)
    summary.insert(2, "entry", entry_names(summary, several))
    summary = seed_columns(summary, rows)  # n seeds, seed std, interval over seeds, rank interval, PSNR of mean MSE
    recognisable = summary["recognised_rate"].notna().any()  # else no such column: nothing was recognised
    summary.drop(columns=["entry", *([] if recognisable else RECOGNISED)]).to_csv(out / "summary.csv", index=False)
    on = ", ".join(datasets_of(runs))  # every figure's title names the dataset(s) it is on
    tests = pairwise_wilcoxon(rows, entries, ALPHA)
    tests.to_csv(out / "wilcoxon.csv", index=False)
    seeded = several_seeds(summary)  # then "significantly better" counts the seed spread (seeds/tables.py)
    seed_tested = seed_tests(rows, entries, ALPHA) if seeded else None
    (out / "seed_tests.csv").unlink(missing_ok=True)  # an earlier report's, when no entry has several seeds now
    if seed_tested is not None:
        seed_tested.to_csv(out / "seed_tests.csv", index=False)
    cost = cost_table(runs, several)
    cost.to_csv(out / "cost.csv", index=False)
    families = dict(zip(cost["entry"], cost["method"], strict=True))  # one hue per implementation (styles.py)
    history = curves.learning_curves(runs, several)
    history.to_csv(out / "learning_curves.csv", index=False)
    status = curves.convergence(history)
    ceiling, classifiers = recognition_ceiling(runs, rows, data_dir)
    datasets = {run.ceiling_key(c): run.dataset(c) for run in runs for c in run.meta}
    if ceiling:
        pd.DataFrame({"testset": list(ceiling), "dataset": [datasets[key] for key in ceiling],
                      "ground_truth_recognised": list(ceiling.values()),
                      "classifier_test_accuracy": [classifiers.get(datasets[key], {}).get("test_accuracy")
                                                   for key in ceiling]}).to_csv(out / "recognition_ceiling.csv",
                                                                                index=False)

    def figure(path: Path, caption: str) -> Block:
        return Block("figure", figure=Figure(path, caption))

    blocks = content.header(runs, time.strftime("%Y-%m-%d %H:%M"))
    blocks += (content.at_a_glance(summary, seed_tested, "seed-aware paired t test on mean MSE (seed spread and "
                                                         "shared test mixtures), Holm-corrected, p < 0.01")
               if seed_tested is not None else content.at_a_glance(summary, tests))
    blocks += content.summary_tables(summary)
    fixed = fixed_order_table(rows)  # scenarios with one set per source: the fixed-order score too
    (out / "fixed_order.csv").unlink(missing_ok=True)  # an earlier report's, when this run has no such scenario
    if not fixed.empty:
        fixed.to_csv(out / "fixed_order.csv", index=False)
        blocks += fixed_order_blocks(fixed, dict(zip(zip(summary["run"], summary["label"], strict=True),
                                                     summary["entry"], strict=True)))

    blocks += _leaderboard_section(runs)

    blocks.append(Block("h2", "Learning curves"))
    if len(history):
        path = figures.learning_curves(history, status, entries, fig_dir / "learning_curves.png", families, on)
        blocks.append(figure(path, "Validation loss per epoch and against cumulative training seconds (training "
                                   "and validation), a line per method and seed"))
        blocks += content.learning_blocks(status)
        blocks.append(Block("note", "Each method's own training loss on its fixed validation set (ConvSep's adds "
                                    "its reconstruction term), so levels compare only between alike losses. Every "
                                    "epoch is in learning_curves.csv."))
    else:
        blocks.append(Block("p", "No method of this run trained."))

    blocks.append(Block("h2", "Distributions"))
    blocks.append(Block("note", "The paper's Fig. 5: one box per method (median, quartiles, whiskers to 1.5 IQR, "
                                "outliers not drawn), per scenario (rows) and σ (columns)."))
    for metric in ("mse", "ssim", "psnr"):
        path = figures.box_plot(rows, metric, entries, fig_dir / f"box_{metric}.png", families, on)
        blocks.append(figure(path, f"{content.TITLES[metric]} per test image · on {on}"))

    one_sigma = summary["sigma"].nunique() < 2  # a figure against σ would be one vertical line of dots
    if one_sigma:
        blocks.append(Block("note", f"One noise level (σ = {summary['sigma'].iloc[0]:g}): no figure against σ; "
                                    "its means are in the Summary."))
    else:
        blocks.append(Block("h2", "Against noise level"))
        path = figures.metric_vs_sigma(summary, METRICS, entries, fig_dir / "vs_sigma.png",
                                       title=f"Mean against noise level (bands: 95 % bootstrap interval) · on {on}",
                                       families=families)
        blocks.append(figure(path, f"Mean MSE, PSNR and SSIM against σ, with 95% bootstrap bands · on {on}"))

    blocks.append(Block("h2", "Example separations"))
    blocks.append(Block("note", f"The paper's Fig. 4: the same test mixtures for every method, a tile per method "
                                f"ranked by mean {content.TITLES[MAIN_METRIC]} (tick the methods to show). Under "
                                "each output: its MSE | SSIM against the source it was assigned to."))
    roots = {run.name: run.root for run in runs}
    settings = examples.choose_settings(rows)
    order = ranked(summary)
    for scenario, sigma in settings:
        part = order[(order["scenario"] == scenario) & (order["sigma"] == sigma)]
        titles = {row.entry: f"{row.rank}. {row.entry} · mean {content.TITLES[MAIN_METRIC]} "
                             f"{content.fmt(getattr(row, f'{MAIN_METRIC}_mean'), MAIN_METRIC)}"
                  for row in part.itertuples()}
        cells = examples.example_cells(rows, scenario, sigma, list(part["entry"]))
        stored = examples.load_examples(roots, list(cells.values()))
        where = ", ".join(dict.fromkeys(rows.loc[rows["scenario"] == scenario, "dataset"]))
        tiles = examples.example_tiles(rows, stored, cells, fig_dir / f"examples_{_slug(scenario)}_sigma{sigma:g}",
                                       titles, where)
        if tiles:
            blocks.append(Block("gallery", f"Example separations · {scenario} · σ = {sigma:g} · on {where}",
                                tiles=[Figure(path, titles.get(entry, "inputs and ground truth"), entry)
                                       for entry, path in tiles]))
    n_settings = len(set(zip(rows["scenario"], rows["sigma"], strict=True)))
    if len(settings) < n_settings:
        blocks.append(Block("note", f"{len(settings)} of {n_settings} settings shown (per scenario the lowest and "
                                    "the highest σ)."))

    blocks.append(Block("h2", "Paired comparison"))
    blocks.append(Block("note", "Per setting: does the row method have significantly lower per-mixture MSE than "
                                "the column method? Wilcoxon signed-rank, two-sided, p < 0.01; pairs by "
                                "test-mixture index; a mixture's MSE is the mean over its sources, "
                                "averaged over seeds. All tests are in wilcoxon.csv."))
    if len(tests):
        path = figures.wilcoxon_heatmap(tests, entries, fig_dir / "wilcoxon.png", ALPHA, on)
        blocks.append(figure(path, f"Significant wins and losses, row vs column · on {on}"))
        blocks += content.wilcoxon_tables(tests, entries)
        if seed_tested is not None:
            blocks += seed_test_blocks(seed_tested, entries, outcome_matrix, content.fmt)
    else:
        blocks.append(Block("p", "Only one method per setting: nothing to compare."))

    testsets = {run.ceiling_key(c): f"{run.dataset(c)} · {run.meta[c]['config']['test_mixtures']} test mixtures"
                for run in runs for c in run.meta}
    ceilings = _setting_ceilings(runs, rows, ceiling)
    blocks += content.recognition_blocks(summary, ceilings, classifiers, testsets, _unlabelled(rows))
    if recognisable and not one_sigma:
        by_scenario: dict[str, list[float]] = {}
        for (scenario, _), values in ceilings.items():
            by_scenario.setdefault(scenario, []).extend(values.values())
        path = figures.metric_vs_sigma(summary, ["recognised"], entries, fig_dir / "recognised.png", by_scenario,
                                       f"Recognisability against noise level (bands: 95 % bootstrap interval) · on "
                                       f"{on}", families)
        blocks.append(figure(path, "Fraction of test mixtures whose sources are all recognised (dashed: ground "
                                   f"truth) · on {on}"))

    blocks += content.cost_blocks(cost)
    path = figures.cost_plot(summary, cost, entries, fig_dir / "cost.png", families, on)
    if path is not None:
        blocks.append(figure(path, "Mean MSE against training time per cell (non-learned methods at 0.001 s) "
                                   "and separation throughput"))
    blocks.append(Block("p", "Files beside this page: summary.csv (every statistic), wilcoxon.csv (every "
                             "test), seed_tests.csv (with several seeds), cost.csv, learning_curves.csv, "
                             "recognition_ceiling.csv, report.md, figures/*.png."))
    blocks += content.notes(several)
    if seeded:
        blocks.append(Block("note", "Seeds: means are over each entry's training seeds; the intervals over seeds, "
                                    "the seed std and the seed-aware comparison (seed_tests.csv; Holm's correction "
                                    "per setting) carry the seed-to-seed spread, which the Wilcoxon test does not."))

    title = blocks[0].text
    (out / "report.md").write_text(render_markdown(blocks, out))
    page = out / "report.html"
    page.write_text(render_html(blocks, title))
    return page


def _leaderboard_section(runs: Sequence[RunData]) -> list[Block]:
    """The leaderboard's tables (``bench leaderboard``) of the entries that trained on a track's budget, with the
    references beside them; nothing when no entry did (its other budgets are in the Summary already)."""
    from sepbench.leaderboard import EXPLAIN, leaderboard_blocks, tables_of

    tables, _ = tables_of(runs, required=False, named_only=True)
    if not tables:
        return []
    return [Block("h2", "Leaderboard"),
            Block("note", "Entries on a leaderboard track's budget, ranked within it (as `bench leaderboard` ranks "
                          "them, which also writes them as CSV with the seed-aware tests). " + EXPLAIN),
            *leaderboard_blocks(tables, heading="h3")]


def _setting_ceilings(runs: Sequence[RunData], rows: pd.DataFrame, ceiling: dict[str, float]
                      ) -> dict[tuple[str, float], dict[str, float]]:
    """Per (scenario, σ) as the tables name them: the ground truth's recognisability of each of its test sets."""
    keys = {(run.name, c): run.ceiling_key(c) for run in runs for c in run.meta}
    found: dict[tuple[str, float], dict[str, float]] = {}
    for scenario, sigma, run, cell in rows[["scenario", "sigma", "run", "cell"]].drop_duplicates().itertuples(
            index=False):
        key = keys.get((run, cell))
        if key in ceiling:
            found.setdefault((scenario, sigma), {})[key] = ceiling[key]
    return found


def _unlabelled(rows: pd.DataFrame) -> list[str]:
    """The datasets of ``rows`` that have no labels (so no recognisability), by the registry's word."""
    from sepbench.datasets.registry import dataset_class

    found = []
    for dataset in dict.fromkeys(rows["dataset"]):
        try:
            labelled = dataset_class(dataset.split("[", 1)[0]).labelled
        except Exception:  # noqa: BLE001 — a plugin not installed here: nothing can be said of its labels
            continue
        if not labelled:
            found.append(dataset)
    return found


def _inputs_fingerprint(run_dir: Path) -> str:
    """A hash of a run's manifest and cell files (names and contents): what its report is made from."""
    digest = hashlib.sha256()
    for path in [run_dir / "manifest.json", *sorted((run_dir / "cells").glob("*"))]:
        if path.is_file():
            try:
                content = path.read_bytes()
            except OSError as exc:  # unreadable: its name and the error stand for it
                content = f"unreadable: {exc.strerror}".encode()
            digest.update(path.name.encode() + b"\0" + content + b"\0")
    return digest.hexdigest()


def is_current(run_dir: str | Path) -> bool:
    """Whether the report in ``run_dir`` was written from the cells it holds now. Contents, not file times,
    decide: a git checkout gives every file the same time."""
    run_dir = Path(run_dir)
    stamp = run_dir / INPUTS_STAMP
    return (run_dir / "report.md").is_file() and stamp.is_file() and \
        stamp.read_text().strip() == _inputs_fingerprint(run_dir)


def write_report(run_dir: str | Path, out: str | Path | None = None, data_dir: str | Path | None = None,
                 warn: Callable[[str], None] | None = None) -> Path:
    """Report on one run, into the run directory unless ``out`` is given; returns the report.html path.
    A report in the run directory is stamped with its inputs' fingerprint (see :func:`is_current`).
    ``warn`` hears one line per damaged cell (reported as missing, never read), per failed cell (with its error) and
    per thing that could not be read. A run whose every cell failed gets a page listing them and why."""
    run = load_run(run_dir)
    _warn(run, warn or (lambda line: None))
    page = (build if run.meta else build_failures)([run], Path(out) if out else run.root, data_dir)
    if not out:
        (run.root / INPUTS_STAMP).write_text(_inputs_fingerprint(run.root) + "\n")
    return page


def write_comparison(run_dirs: Sequence[str | Path], out: str | Path | None = None,
                     data_dir: str | Path | None = None, warn: Callable[[str], None] | None = None) -> Path:
    """One page comparing several runs; into ``out`` or ``<first run>/comparison/``. Returns report.html."""
    runs = load_runs(run_dirs)
    for run in runs:
        _warn(run, warn or (lambda line: None))
        if not run.meta:
            raise UserError(f"{run.root}: no finished cell to compare ({len(run.failed)} failed)")
    return build(runs, Path(out) if out else runs[0].root / "comparison", data_dir)


def _warn(run: RunData, warn: Callable[[str], None]) -> None:
    """One line per thing of ``run`` the report leaves out: unreadable files, damaged and failed cells."""
    for line in run.warnings:
        warn(line)
    for cell in run.damaged:
        warn(f"{run.root}: damaged cell {cell['id']} left out: {cell['error']}")
    for cell in run.failed:
        warn(f"{run.root}: failed cell {cell['id']} ({cell['label']} · {cell['scenario']} · σ={cell['sigma']:g} · "
             f"seed {cell['seed']}): {cell['error']}")


def build_failures(runs: Sequence[RunData], out: Path, data_dir: str | Path | None = None) -> Path:
    """The page of a run with no finished cell: what was planned, and why each cell failed. Tables and figures of
    an earlier report are removed, so that nothing on disk claims results the run no longer has."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / "figures").is_dir():
        _clean(out / "figures")
    for name in TABLES:
        (out / name).unlink(missing_ok=True)
    blocks = content.header(runs, time.strftime("%Y-%m-%d %H:%M"))
    blocks.append(Block("p", "No cell finished: there are no scores to tabulate or plot."))
    (out / "report.md").write_text(render_markdown(blocks, out))
    page = out / "report.html"
    page.write_text(render_html(blocks, blocks[0].text))
    return page
