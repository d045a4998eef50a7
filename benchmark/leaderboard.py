"""``bench leaderboard RUN...``: the per-track leaderboard from any run directories.

A **track** fixes the training budget in mixtures seen (``mixtures × epochs``, hardware independent) and the
precision; an entry belongs to the track whose budget it trained on exactly (:data:`TRACKS`), and entries that
train nothing (``average``, ``ica``, …) stand in every track as references. Anything else is its own
``other`` track, labelled with its budget, so that no table mixes budgets. Per track and setting (scenario · σ,
with its dataset), one row per entry:

* the mean over training seeds, the interval over seeds (a t interval over the seed means, which carries the
  seed spread; one seed: the bootstrap over test mixtures, and the row says "1 seed"), the seed-to-seed
  standard deviation and n seeds (:func:`sepbench.report.seeds.seed_columns`);
* both conventions: PSNR as the mean of per-image values and as the PSNR of the mean MSE; SSIM with
  scikit-image's 7×7 window and with the Gaussian window of Wang et al. (``ssim_gauss``);
* the rank by mean MSE with its 95 % interval (ranks bootstrapped over seeds and shared test mixtures), within
  the track only;
* the best validation loss (the score the best epoch was chosen on, from held-out images) beside the test scores,
  "not converged" where the validation loss still fell by more than 1 % in the last epoch;
* parameters in that setting, measured fit core-seconds per seed, and the training FLOPs of the budget where they
  can be counted (:mod:`sepbench.flops`: matmuls, convolutions and attention of the training steps, counted on the
  ``meta`` device; hardware independent, unlike core-seconds).

Writes ``leaderboard.md``, ``leaderboard.html`` (self-contained, the report's styles) and ``leaderboard.csv``
(every column) and, per track with several seeds, ``tests-<track>.csv``: the seed-aware paired comparison with
Holm's correction. ``bench report`` shows the same tables as a section of its page (:func:`leaderboard_blocks`)
when a run has entries on a track's budget.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sepbench.errors import UserError
from sepbench.flops import training_flops_per_mixture
from sepbench.report.load import RunData, combine, entry_names, load_runs
from sepbench.report.page import Block, Table, render_html, render_markdown
from sepbench.report.seeds import seed_columns, seed_tests
from sepbench.report.summary import GROUP, summarise

STILL_FALLING = 0.01  # the last epoch's validation loss below the one before by more than this: not converged


@dataclass(frozen=True)
class Track:
    """A budget every entry of the track trains on exactly."""

    name: str
    mixtures_seen: int
    precision: str
    about: str

    def describe(self) -> str:
        return f"{self.name}: {self.mixtures_seen:,} training mixtures seen, {self.precision}"


TRACKS = (
    Track("small", 60_000, "fp32", "every built-in learned method (grid leaderboard-small)"),
    Track("large", 480_000, "bf16", "the reference separators (grid leaderboard-large)"),
)


def cell_facts(meta: dict[str, Any]) -> dict[str, Any]:
    """What the leaderboard reads from a cell's record besides its rows: budget, precision, parameters, fit
    seconds and threads, the best validation loss and whether it was still falling."""
    budget = meta["config"].get("budget")
    history = [h for h in meta.get("history") or [] if h.get("val_loss") is not None]
    val = [float(h["val_loss"]) for h in history]
    falling = len(val) >= 2 and val[-1] < val[-2] * (1 - STILL_FALLING)
    return {"mixtures_seen": budget["mixtures"] * budget["epochs"] if budget else 0,
            "precision": meta.get("precision"), "n_parameters": meta.get("n_parameters"),
            "fit_core_seconds": float(meta.get("fit_seconds", 0.0)) * int(meta.get("threads", 1) or 1),
            "best_val_loss": min(val) if val else math.nan, "still_falling": bool(falling),
            "trains": budget is not None}


def track_name(facts: dict[str, Any]) -> str | None:
    """The track a trained cell belongs to; None for a cell that trains nothing (a reference in every track)."""
    if not facts["trains"]:
        return None
    for track in TRACKS:
        if (facts["mixtures_seen"], facts["precision"]) == (track.mixtures_seen, track.precision):
            return track.name
    return f"other ({facts['mixtures_seen']:,} mixtures, {facts['precision']})"


def _facts_frame(runs: Sequence[RunData]) -> pd.DataFrame:
    records = []
    for run in runs:
        for cell_id, meta in run.meta.items():
            records.append({"run": run.name, "cell": cell_id, **cell_facts(meta)})
    facts = pd.DataFrame.from_records(records)
    facts["track"] = [track_name(row) for row in facts.to_dict("records")]
    return facts


def training_flops(run: RunData, cell_id: str) -> float:
    """The training FLOPs of a cell's whole budget (per mixture × mixtures seen), NaN where they cannot be
    counted: the cell is rebuilt from its record as ``bench verify`` rebuilds it, for its task and parameters."""
    from sepbench.verify.sample import Committed, rebuild

    meta = run.meta[cell_id]
    budget = meta["config"].get("budget")
    if not budget:
        return math.nan
    try:
        cell, _ = rebuild(Committed(cell_id, meta), run.root)
    except Exception:  # noqa: BLE001 — a method no longer installed, a scenario it no longer serves: unknown
        return math.nan
    per_mixture = training_flops_per_mixture(cell.method, cell.params, cell.task, budget["batch_size"])
    return math.nan if per_mixture is None else per_mixture * budget["mixtures"] * budget["epochs"]


def track_tables(run_dirs: Sequence[str | Path]) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Per track: its table (one row per entry × setting) and its seed-aware paired tests (several seeds only)."""
    return tables_of(load_runs(run_dirs))


def tables_of(runs: Sequence[RunData], required: bool = True, named_only: bool = False
              ) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """:func:`track_tables` of loaded runs; with ``required`` False, runs of which no cell trains give no table
    instead of an error; with ``named_only``, the tracks of :data:`TRACKS` only (no ``other`` track)."""
    rows = combine(runs)
    facts = _facts_frame(runs)
    per_cell = facts.set_index(["run", "cell"])
    rows = rows.join(per_cell[["track"]], on=["run", "cell"])
    named = {t.name for t in TRACKS}
    trained_tracks = [t for t in dict.fromkeys(facts["track"]) if isinstance(t, str) and (t in named or not named_only)]
    if not trained_tracks:
        if not required:
            return {}, {}
        raise UserError("no cell of these runs trains: a leaderboard ranks trained entries within a track")
    order = {t.name: i for i, t in enumerate(TRACKS)}
    trained_tracks.sort(key=lambda t: (order.get(t, len(order)), t))
    tables, tests = {}, {}
    for track in trained_tracks:
        part = rows[(rows["track"] == track) | rows["track"].isna()].copy()
        settings = part.loc[part["track"] == track, ["scenario", "sigma"]].drop_duplicates()
        part = part.merge(settings, on=["scenario", "sigma"])  # references only where the track's entries are
        summary = summarise(part)
        summary.insert(2, "entry", entry_names(summary, several=len(runs) > 1))
        summary = seed_columns(summary, part)
        cells = part[[*GROUP, "cell"]].drop_duplicates().join(per_cell.drop(columns="track"), on=["run", "cell"])
        extra = cells.groupby(GROUP, sort=False).agg(
            n_parameters=("n_parameters", "first"), mixtures_seen=("mixtures_seen", "first"),
            precision=("precision", "first"), fit_core_seconds=("fit_core_seconds", "mean"),
            best_val_loss=("best_val_loss", "mean"), not_converged=("still_falling", "any")).reset_index()
        table = summary.merge(extra, on=GROUP, how="left")
        by_run = {run.name: run for run in runs}
        first = cells.drop_duplicates(GROUP).set_index(GROUP)["cell"]  # FLOPs are the same for every seed
        table["train_tflop"] = [training_flops(by_run[key[0]], first[key]) / 1e12 if key in first.index
                                else math.nan for key in table[GROUP].itertuples(index=False, name=None)]
        table.insert(0, "track", track)
        tables[track] = table.sort_values(["dataset", "scenario", "sigma", "mse_mean"]).reset_index(drop=True)
        if (table["n_seeds"].fillna(1) > 1).any():
            tests[track] = seed_tests(part, list(dict.fromkeys(part["entry"])))
    return tables, tests


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value) \
        else format(value, spec)


COLUMNS = ["rank", "entry", "seeds", "parameters", "MSE [interval]", "seed std", "PSNR per image",
           "PSNR of mean MSE", "SSIM 7×7", "SSIM Gaussian", "best val. loss", "fit core-min", "train TFLOP", "note"]
EXPLAIN = ("Columns: rank by mean MSE with its 95 % interval (bootstrap over seeds and test mixtures); MSE mean over "
           "seeds [interval over seeds: t interval over the seed means; one seed: bootstrap over mixtures]; "
           "seed-to-seed std of the MSE; PSNR as the mean of per-image values and as the PSNR of the mean MSE; SSIM "
           "with scikit-image's 7×7 window and with the Gaussian window (σ 1.5) of Wang et al.; the best validation "
           "loss (held-out training images); fit core-minutes per seed; training TFLOP of the whole budget "
           "(matmuls, convolutions and attention of the training steps, counted; – where they cannot be).")


def _row(row: Any) -> list[str]:
    rank = f"{int(row.rank_low)}–{int(row.rank_high)}" if pd.notna(row.rank_low) else "–"
    notes = []
    if row.n_seeds == 1 and row.mixtures_seen:
        notes.append("1 seed")
    if bool(row.not_converged):
        notes.append("not converged")
    if not row.mixtures_seen:
        notes.append("trains nothing")
    gauss = getattr(row, "ssim_gauss_mean", math.nan)
    return [rank, str(row.entry), str(int(row.n_seeds)) if pd.notna(row.n_seeds) else "–",
            _fmt(row.n_parameters, ",.0f") if row.n_parameters else "–",
            f"{row.mse_mean:.4g} [{row.mse_ci2_low:.4g}, {row.mse_ci2_high:.4g}]", _fmt(row.mse_seed_std, ".2g"),
            f"{row.psnr_mean:.2f}", f"{row.psnr_of_mean_mse:.2f}", f"{row.ssim_mean:.3f}", _fmt(gauss, ".3f"),
            _fmt(row.best_val_loss, ".4g"),
            _fmt(row.fit_core_seconds / 60 if row.mixtures_seen else math.nan, ".1f"),
            _fmt(getattr(row, "train_tflop", math.nan), ".3g"), ", ".join(notes)]


def leaderboard_blocks(tables: dict[str, pd.DataFrame], heading: str = "h2") -> list[Block]:
    """The tables as page blocks: a ``heading`` per track (its budget and precision) and the level below it per
    setting; rows in rank order, the note column last."""
    known = {t.name: t for t in TRACKS}
    sub = f"h{int(heading[1]) + 1}"
    blocks: list[Block] = []
    for track, table in tables.items():
        spec = known.get(track)
        blocks.append(Block(heading, f"Track {spec.describe() if spec else track}"))
        if spec:
            blocks.append(Block("p", f"{spec.about[0].upper()}{spec.about[1:]}."))
        for (dataset, scenario, sigma), part in table.groupby(["dataset", "scenario", "sigma"], sort=False):
            blocks.append(Block(sub, f"{scenario} · σ = {sigma:g} · {dataset}"))
            blocks.append(Block("table", table=Table(COLUMNS, [_row(row) for row in part.itertuples()], left=2)))
    return blocks


def page_blocks(tables: dict[str, pd.DataFrame], runs: Sequence[str | Path]) -> list[Block]:
    """The whole leaderboard page: what it is made from, how to read it, then :func:`leaderboard_blocks`."""
    return [Block("h1", "Leaderboard"),
            Block("p", f"From {', '.join(f'`{r}`' for r in runs)} (`bench leaderboard`). Every number is "
                       "sepbench's protocol: all test mixtures, both sources, the best output→source assignment. "
                       "Entries are compared within a track only (equal training budget and precision); entries "
                       "that train nothing stand in every track."),
            Block("p", EXPLAIN), *leaderboard_blocks(tables)]


def markdown(tables: dict[str, pd.DataFrame], runs: Sequence[str | Path], base: Path | None = None) -> str:
    """The leaderboard page in Markdown."""
    return render_markdown(page_blocks(tables, runs), base or Path("."))


def write_leaderboard(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Build the leaderboard of ``run_dirs`` into ``out`` (made if absent): leaderboard.md, leaderboard.html,
    leaderboard.csv and tests-<track>.csv; returns the markdown's path."""
    if not run_dirs:
        raise UserError("name at least one run directory")
    tables, tests = track_tables(run_dirs)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: not a folder")
    out.mkdir(parents=True, exist_ok=True)
    pd.concat(tables.values(), ignore_index=True).drop(columns=["entry"]).to_csv(out / "leaderboard.csv",
                                                                               index=False)
    for old in out.glob("tests-*.csv"):
        old.unlink()
    for track, frame in tests.items():
        frame.to_csv(out / f"tests-{_slug(track)}.csv", index=False)
    blocks = page_blocks(tables, [str(r) for r in run_dirs])
    (out / "leaderboard.html").write_text(render_html(blocks, "sepbench leaderboard"))
    page = out / "leaderboard.md"
    page.write_text(render_markdown(blocks, out))
    return page


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


__all__ = ["TRACKS", "Track", "cell_facts", "leaderboard_blocks", "tables_of", "track_name", "track_tables",
           "training_flops", "write_leaderboard"]
