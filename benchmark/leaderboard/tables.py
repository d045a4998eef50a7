"""The per-track tables: one row per entry × setting, seeds aggregated, both conventions, rank intervals, the
best validation loss, parameters, fit core-seconds and training FLOPs; and the seed-aware paired tests."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from sepbench.errors import UserError
from sepbench.leaderboard import tracks
from sepbench.leaderboard.flops import training_flops_per_mixture
from sepbench.leaderboard.tracks import cell_facts, track_name
from sepbench.report.load import RunData, combine, entry_names, load_runs
from sepbench.report.seeds import seed_columns, seed_tests
from sepbench.report.seeds.bootstrap import percentile_interval
from sepbench.report.seeds.tables import seed_matrices
from sepbench.report.summary import GROUP, summarise


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
    counted: the cell is rebuilt from its record as ``bench verify`` rebuilds it, for its task and parameters, and
    counted with today's network, so only while the method's code is the code that trained the cell (its recorded
    provenance; a changed network would be another network's FLOPs)."""
    from sepbench.provenance import code_fingerprint
    from sepbench.registry import get_method
    from sepbench.verify.sample import Committed, rebuild

    meta = run.meta[cell_id]
    budget = meta["config"].get("budget")
    if not budget:
        return math.nan
    try:
        cell, _ = rebuild(Committed(cell_id, meta), run.root)
        if code_fingerprint(get_method(cell.method))[0] != (meta.get("provenance") or {}).get("code"):
            return math.nan
    except Exception:  # noqa: BLE001 — a method no longer installed, a scenario it no longer serves: unknown
        return math.nan
    per_mixture = training_flops_per_mixture(cell.method, cell.params, cell.task, budget["batch_size"])
    return math.nan if per_mixture is None else per_mixture * budget["mixtures"] * budget["epochs"]


def track_tables(run_dirs: Sequence[str | Path]) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Per track: its table (one row per entry × setting) and its seed-aware paired tests (several seeds only)."""
    return tables_of(load_runs(run_dirs))


def _two_level_bootstrap(rows: pd.DataFrame) -> pd.DataFrame:
    """Per entry with several seeds: the percentile interval of the two-level bootstrap of the mean MSE (seeds
    resampled, then the shared test mixtures), beside the t interval the tables show. With 3 seeds it under-covers
    (docs/statistics.md); it is in the CSV so that a reader can compare the two."""
    records = []
    for key, matrix in seed_matrices(rows, "mse").items():
        low, high = percentile_interval(matrix.to_numpy()) if len(matrix) > 1 else (math.nan, math.nan)
        records.append({**dict(zip(GROUP, key, strict=True)), "mse_boot2_low": low, "mse_boot2_high": high})
    return pd.DataFrame.from_records(records, columns=[*GROUP, "mse_boot2_low", "mse_boot2_high"])


def apart_by_test_set(rows: pd.DataFrame) -> pd.DataFrame:
    """Entries of one setting (dataset, scenario, σ) scored on other test mixtures (their test keys and
    fingerprints differ: another test size, other pairs, another forward model under the same scenario name) are
    never ranked together: the test set met first keeps the setting's name, each other one is renamed
    ``<scenario> · test set k`` and becomes a table of its own."""
    rows = rows.copy()
    setting = ["dataset", "scenario", "sigma"]
    for key, part in rows.groupby(setting, sort=False):
        for k, testset in enumerate(list(dict.fromkeys(part["testset"]))[1:], start=2):
            where = part.index[part["testset"] == testset]
            rows.loc[where, "scenario"] = f"{key[1]} · test set {k}"
    return rows


def _one_reference_each(part: pd.DataFrame, track: str) -> pd.DataFrame:
    """A reference (a method that trains nothing) that several runs scored on the same test set stands once in a
    track: from the first run that has entries of the track, else from the first run given. Nothing was trained, the
    test mixtures are the same, so the copies are the same numbers; twice in a table they would only tie each other
    for a rank and add a pair to the tests."""
    references = part[part["track"].isna()]
    if references.empty:
        return part
    own = set(part.loc[part["track"] == track, "run"])
    same = references[["label", "dataset", "scenario", "sigma", "testset"]].astype(str).agg("|".join, axis=1)
    keep = {key: next((run for run in runs if run in own), runs[0])
            for key, runs in references.groupby(same, sort=False)["run"].unique().items()}
    return part.drop(index=references.index[references["run"] != same.map(keep)])


def tables_of(runs: Sequence[RunData], required: bool = True, named_only: bool = False
              ) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """:func:`track_tables` of loaded runs; with ``required`` False, runs of which no cell trains give no table
    instead of an error; with ``named_only``, the tracks of :data:`TRACKS` only (no ``other`` track)."""
    rows = apart_by_test_set(combine(runs))
    facts = _facts_frame(runs)
    per_cell = facts.set_index(["run", "cell"])
    rows = rows.join(per_cell[["track"]], on=["run", "cell"])
    named = {t.name for t in tracks.TRACKS}
    trained_tracks = [t for t in dict.fromkeys(facts["track"]) if isinstance(t, str) and (t in named or not named_only)]
    if not trained_tracks:
        if not required:
            return {}, {}
        raise UserError("no cell of these runs trains: a leaderboard ranks trained entries within a track")
    order = {t.name: i for i, t in enumerate(tracks.TRACKS)}
    trained_tracks.sort(key=lambda t: (order.get(t, len(order)), t))
    tables, tests = {}, {}
    for track in trained_tracks:
        part = rows[(rows["track"] == track) | rows["track"].isna()].copy()
        settings = part.loc[part["track"] == track, ["scenario", "sigma"]].drop_duplicates()
        part = part.merge(settings, on=["scenario", "sigma"])  # references only where the track's entries are
        part = _one_reference_each(part, track)
        summary = summarise(part)
        summary.insert(2, "entry", entry_names(summary, several=len(runs) > 1))
        summary = seed_columns(summary, part)
        cells = part[[*GROUP, "cell"]].drop_duplicates().join(per_cell.drop(columns="track"), on=["run", "cell"])
        extra = cells.groupby(GROUP, sort=False).agg(
            n_parameters=("n_parameters", "first"), mixtures_seen=("mixtures_seen", "first"),
            precision=("precision", "first"), fit_core_seconds=("fit_core_seconds", "mean"),
            fit_gpu_seconds=("fit_gpu_seconds", "mean"),
            devices=("device_name", lambda names: ", ".join(sorted({str(n) for n in names.dropna()}))),
            best_val_loss=("best_val_loss", "mean"), not_converged=("still_falling", "any")).reset_index()
        table = summary.merge(extra, on=GROUP, how="left")
        by_run = {run.name: run for run in runs}
        first = cells.drop_duplicates(GROUP).set_index(GROUP)["cell"]  # FLOPs are the same for every seed
        table["train_tflop"] = [training_flops(by_run[key[0]], first[key]) / 1e12 if key in first.index
                                else math.nan for key in table[GROUP].itertuples(index=False, name=None)]
        table = table.merge(_two_level_bootstrap(part), on=GROUP, how="left")
        table.insert(0, "track", track)
        tables[track] = table.sort_values(["dataset", "scenario", "sigma", "mse_mean"]).reset_index(drop=True)
        if (table["n_seeds"].fillna(1) > 1).any():
            tests[track] = seed_tests(part, list(dict.fromkeys(part["entry"])))
    return tables, tests
