"""``bench verify``: rerun the chosen cells into a temporary directory (the run is only read) and compare.

Per cell, first whether the code and versions here are those that produced it (a verification against changed
code is said to be one), then per metric the committed and rerun means, their difference and the tolerance.
"""

from __future__ import annotations

import logging
import math
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from sepbench.devices import place
from sepbench.errors import UserError
from sepbench.executors import make_executor
from sepbench.plan import Cell, Plan
from sepbench.precision import bf16_supported
from sepbench.progress import RunProgress
from sepbench.provenance import changes, provenance
from sepbench.registry import get_method
from sepbench.sources import set_aside_missing
from sepbench.store import RunStore
from sepbench.training_machines import machine_names
from sepbench.verify.sample import Committed, choose, finished_cells, rebuild
from sepbench.verify.tolerance import KINDS, METRICS, Tolerance, cell_kind, tolerances_for

EXIT_OK, EXIT_DIFFERS = 0, 1
SUMMARY_METRICS = ("mse", "ssim")  # the record's own means (its JSON), which must agree with its rows


class _Progress(RunProgress):
    """The run's progress lines, plus one when a cell starts (a trained cell may take minutes)."""

    def started_cell(self, description: str) -> None:
        super().started_cell(description)
        self.line(f"started {description}")


def means(rows: pd.DataFrame) -> dict[str, float]:
    """The cell's scores as verify compares them: means over its scored rows; the recognisability rate where the
    cell has one (NaN otherwise)."""
    found = {metric: float(rows[metric].mean()) for metric in ("mse", "psnr", "ssim")}
    found["ssim_gauss"] = float(rows["ssim_gauss"].mean()) if "ssim_gauss" in rows else math.nan  # older cells: none
    flags = rows["recognised"].astype(float) if "recognised" in rows else pd.Series(dtype=float)
    found["recognised"] = float(flags.mean()) if flags.notna().any() else math.nan
    return found


def _line(mark: str, committed: Committed, metric: str, old: float, new: float, tolerance: Tolerance) -> str:
    diff = tolerance.difference(old, new)
    shown = f"{diff * 100:.3g} %" if tolerance.relative else f"{diff:.3g}"
    return (f"  {mark:4} {committed.cell_id} {committed.describe()} {metric}: committed {old:.6g}, rerun {new:.6g}, "
            f"difference {shown} (tolerance {tolerance.describe()})")


def compare(committed: Committed, committed_rows: pd.DataFrame, rerun_rows: pd.DataFrame,
            tolerances: dict[str, Tolerance]) -> tuple[list[str], list[str]]:
    """Lines for one cell's metrics, and the metrics outside their tolerance (a summary in the record that
    disagrees with the record's own rows counts as one too)."""
    lines, failed = [], []
    old, new = means(committed_rows), means(rerun_rows)
    for metric in SUMMARY_METRICS:
        recorded = committed.record.get(metric)
        if not isinstance(recorded, (int, float)) or not math.isclose(recorded, old[metric], rel_tol=1e-9):
            failed.append(metric)
            lines.append(f"  FAIL {committed.cell_id} {committed.describe()} {metric}: the record's summary "
                         f"({recorded}) disagrees with the mean of its rows ({old[metric]:.6g})")
    for metric in METRICS:
        if math.isnan(old[metric]) and (math.isnan(new[metric]) or metric == "ssim_gauss"):
            continue  # no recognisability on this dataset; a cell from before sepbench scored the Gaussian SSIM
        ok = tolerances[metric].holds(old[metric], new[metric])
        if not ok and metric not in failed:
            failed.append(metric)
        lines.append(_line("ok" if ok else "FAIL", committed, metric, old[metric], new[metric], tolerances[metric]))
    return lines, failed


def _describe(store: RunStore, cell_id: str) -> str:
    """label · scenario · σ · seed of a recorded cell, or "" where its record cannot be read."""
    try:
        return Committed(cell_id, store.read_record(cell_id)).describe()
    except (OSError, ValueError, TypeError):
        return ""


def _provenance_line(committed: Committed, cell: Cell, notes: list[str]) -> str:
    current = provenance(get_method(cell.method), cell.data, place(cell.resources.gpu).device.type)
    differs = changes(committed.record.get("provenance"), current) + [f"configuration: {n}" for n in notes]
    if not differs:
        return "  code and versions: as committed (same method code, sepbench, torch, device kind)"
    return ("  code and versions DIFFER from the committed cell (a verification against changed code): "
            + "; ".join(differs))


def _test_set_line(committed: Committed, rerun: dict[str, Any], failed: list[str]) -> str:
    """Whether the rerun was scored on the very test mixtures of the committed cell (their fingerprints); a
    difference fails the cell, whatever its scores."""
    old, new = committed.record.get("test_fingerprint"), rerun.get("test_fingerprint")
    if not old:
        return "  test mixtures: the committed cell records no fingerprint of them (a cell of an older sepbench)"
    if old != new:
        failed.append("test mixtures")
        return (f"  FAIL {committed.cell_id} {committed.describe()}: the rerun's test mixtures differ from the "
                f"committed ones (fingerprint {new}, committed {old})")
    return f"  test mixtures: identical to the committed ones (fingerprint {old})"


def pinned_precision(cell: Cell, record: dict[str, Any]) -> Cell:
    """The cell to rerun: a grid's 'auto' precision pinned to what it resolved to for the committed cell (fp32 on
    a CPU without bf16 instructions, bf16 with them), so that a rerun on another kind of CPU repeats the committed
    computation instead of another one."""
    resolved = record.get("precision")
    if cell.budget is None or cell.budget.precision != "auto" or resolved not in ("fp32", "bf16"):
        return cell
    return replace(cell, budget=replace(cell.budget, precision=resolved))


def _precision_line(record: dict[str, Any], cell: Cell) -> str | None:
    configured = ((record.get("config") or {}).get("budget") or {}).get("precision")
    if configured != "auto" or cell.budget is None:
        return None
    slow = ""
    if cell.budget.precision == "bf16" and not bf16_supported(place(cell.resources.gpu).device):
        slow = " (emulated here, without bf16 instructions: 9–20× slower than fp32, docs/performance.md)"
    return (f"  precision: the grid asks 'auto', which resolved to {record.get('precision')} for the committed cell; "
            f"the rerun trains in {cell.budget.precision}{slow}")


def _machine_line(committed: dict[str, Any], rerun: dict[str, Any]) -> str:
    """Where the committed cell and the rerun ran (device, CPU instruction set): the tolerances bound a rerun on
    another CPU, and a difference of exactly 0 is expected only on the same one."""
    def where(record: dict[str, Any]) -> str:
        name = machine_names(record) or record.get("device") or "unknown"
        return f"{name} ({record['cpu_capability']})" if record.get("cpu_capability") else str(name)

    old, new = where(committed), where(rerun)
    if old == new:
        return f"  machine: {new}, as for the committed cell"
    return f"  machine: rerun on {new}; the committed cell ran on {old}"


def verify_run(run: str | Path, *, count: int | None = None, named: tuple[str, ...] = (), seed: int = 0,
               executor: str = "local", data_dir: str | Path | None = None,
               overrides: dict[str, float] | None = None, out: TextIO | None = None,
               progress_stream: TextIO | None = None) -> int:
    """Rerun the chosen cells of ``run`` (``named`` ids, else ``count`` at random, seeded; default 3) and compare
    each metric with the committed one; 0 when all agree within tolerance, 1 when any does not or a cell of the
    run is damaged. Bad input raises UserError before any cell runs."""
    say: Callable[[str], None] = lambda text: print(text, file=out or sys.stdout, flush=True)  # noqa: E731
    store = RunStore(run)
    if not store.root.is_dir():
        raise UserError(f"{store.root}: no such run directory")
    store.read_manifest()  # not a run directory: UserError
    chosen = choose(store, count, named, seed)
    rebuilt = [(committed, *rebuild(committed, store.root)) for committed in chosen]  # errors before any work
    rebuilt = [(committed, pinned_precision(cell, committed.record), notes) for committed, cell, notes in rebuilt]
    try:  # the source images each cell needs, here (a dataset that is not: one line, exit 2)
        _, missing = set_aside_missing(Plan(tuple(cell for _, cell, _ in rebuilt), ()), data_dir)
    except UserError as exc:
        raise UserError(f"cannot rerun here: {str(exc).removeprefix('no cell of the grid can run: ')}") from None
    if missing:
        raise UserError(f"cannot rerun {missing[0].cells} of the cells here: {missing[0].message}")
    _, damaged = finished_cells(store)
    overrides = overrides or {}
    failures: list[str] = []
    for cell_id, why in damaged:
        where = f"{cell_id} {_describe(store, cell_id)}".rstrip()
        failures.append(f"{where}: damaged ({why})")
        say(f"FAIL {where}: its committed files are damaged ({why}): its scores cannot be trusted")
    say(f"verify {store.root}: rerunning {len(rebuilt)} cell(s) ({executor} executor) into a temporary directory")
    tolerances = {}
    for committed, cell, notes in rebuilt:
        kind = cell_kind(committed.record)
        tolerances[committed.cell_id] = tolerances_for(kind, overrides)
        row = ", ".join(f"{m} {t.describe()}" for m, t in tolerances[committed.cell_id].items())
        say(f"cell {committed.cell_id} {committed.describe()}: {KINDS[kind]}; tolerances: {row}")
        say(_provenance_line(committed, cell, notes))
        if (line := _precision_line(committed.record, cell)) is not None:
            say(line)
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        results = _rerun([cell for _, cell, _ in rebuilt], Path(tmp) / "run", executor, data_dir, progress_stream)
        for committed, cell, _ in rebuilt:
            meta, rows = results.get(cell.id, ({"error": "no result"}, None))
            if rows is None:
                failures.append(f"{committed.cell_id} {committed.describe()}: the rerun failed")
                say(f"  FAIL {committed.cell_id} {committed.describe()}: the rerun failed: {meta.get('error')}")
                continue
            committed_rows = pd.read_parquet(store.cells / f"{committed.cell_id}.parquet")
            lines, failed = compare(committed, committed_rows, rows, tolerances[committed.cell_id])
            lines.insert(0, _test_set_line(committed, meta, failed))
            lines.insert(0, _machine_line(committed.record, meta))
            for line in lines:
                say(line)
            if failed:
                failures.append(f"{committed.cell_id} {committed.describe()}: {', '.join(failed)}")
    if failures:
        say(f"verify: {len(failures)} problem(s), outside tolerance or not reproduced:")
        for failure in failures:
            say(f"  {failure}")
        return EXIT_DIFFERS
    say(f"verify: all {len(rebuilt)} cell(s) reproduce within tolerance")
    return EXIT_OK


def _rerun(cells: list[Cell], root: Path, executor: str, data_dir: str | Path | None,
           stream: TextIO | None) -> dict[str, tuple[dict[str, Any], pd.DataFrame | None]]:
    """Run ``cells`` into a fresh run directory ``root``; per cell id its record and its rows as written (None: the
    cell failed)."""
    from sepbench import recognise
    from sepbench.runner import _labelled_sources

    store = RunStore(root)
    progress = _Progress(len(cells), stream or sys.stderr)
    for sources in _labelled_sources(cells, data_dir):  # the digit classifier once, before the cells (as a run)
        try:
            recognise.load_classifier(data_dir, sources, say=progress.line)
        except Exception as exc:  # an extra: the cells score without it, and the comparison says so
            progress.line(f"  {recognise.describe(sources)[4:]} not available: {type(exc).__name__}: {exc}")
    found: dict[str, tuple[dict[str, Any], pd.DataFrame | None]] = {}

    def record(result: Any) -> None:
        store.write_result(result, "verify")
        rows = pd.read_parquet(store.cells / f"{result.cell_id}.parquet") if result.status == "done" else None
        found[result.cell_id] = (result.meta, rows)

    with store.lock(), _own_log(root / "run.log"):
        make_executor(executor, data_dir=data_dir).run(cells, record, progress)
    return found


@contextmanager
def _own_log(path: Path) -> Iterator[None]:
    """The reruns' log lines go to the temporary run's log, never to a log file of another run this process wrote
    (a run's file handler stays on the ``sepbench`` logger after :func:`sepbench.runner.run_grid`)."""
    logger = logging.getLogger("sepbench")
    others = [h for h in logger.handlers if isinstance(h, logging.FileHandler)]
    level = logger.level
    for handler in others:
        logger.removeHandler(handler)
    mine = logging.FileHandler(path)
    logger.addHandler(mine)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(mine)
        mine.close()
        for handler in others:
            logger.addHandler(handler)
        logger.setLevel(level)
