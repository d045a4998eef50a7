"""``bench run``: plan the grid, lock the run directory, run what is missing, record everything."""

from __future__ import annotations

import heapq
import importlib.metadata
import logging
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from sepbench import recognise
from sepbench.calibration import ObservedSpeeds, fixed_speed, machine_speed, observed_path, speed_key
from sepbench.calibration.observed import record as record_speed
from sepbench.cell import checkpoint_epochs
from sepbench.devices import place
from sepbench.executors import make_executor
from sepbench.files import describe_os_error, is_disk_full
from sepbench.grid_model import Grid
from sepbench.integrity import remove_partial_writes, set_aside
from sepbench.plan import Cell, plan_grid
from sepbench.precision import EMULATED_BF16_SPEED, cpu_has_bf16
from sepbench.progress import RunProgress, format_duration
from sepbench.registry import get_method
from sepbench.resume import describe, grid_history, read_previous_manifest, triage
from sepbench.selection import parse_selection
from sepbench.signals import EXIT_TERMINATED, forget_termination, is_termination
from sepbench.sources import load_sources, set_aside_missing
from sepbench.store import RunStore

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
RAY_START_SECONDS = 10.0  # a private Ray's start and the driver's connection, typically (for the estimate)
EXIT_DISK_FULL = 3  # a write to the run directory failed for want of space: the run stopped, finished cells kept


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("sepbench", "torch", "numpy", "scikit-image", "scikit-learn", "ray", "pandas"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def expected_duration(cells: Sequence[Cell], parallel: float) -> float:
    """Seconds ``cells`` should take on CPUs with ``parallel`` cells at a time, handed out longest first as the
    Ray scheduler does (each to the first free slot): the last cell to finish, not the mean load, ends a run."""
    slots = [0.0] * max(int(parallel), 1)
    for seconds in sorted((c.expected_seconds for c in cells), reverse=True):
        heapq.heapreplace(slots, slots[0] + seconds)
    return max(slots)


def default_run_dir(grid: Grid) -> Path:
    return Path("reports") / grid.name


def run_grid(grid: Grid, *, out: str | Path | None = None, executor: str = "ray", address: str | None = None,
             data_dir: str | Path | None = None, progress_stream: Any = None, gpu_share: float | None = None,
             keep_stale: bool = False, cell_timeout: float | None = None, keep_models: bool = False,
             jobs: int = 1, only: Sequence[str] = ()) -> int:
    """Run every missing, failed, damaged or stale cell of ``grid``; returns the exit status (0, 1, 130 or 143; 3
    when the disk filled up, 2 when the run directory could not be written otherwise; bad input raises).
    ``keep_stale`` keeps cells whose code, versions or device changed (marked in the manifest).

    ``gpu_share``: the share of a GPU each GPU cell takes in this run (overrides the grid and the methods);
    ``cell_timeout``: seconds a cell may run before it is ended and recorded as failed (a grid entry's own
    ``timeout`` wins); ``keep_models``: every cell whose method can be kept stores its fitted method (finished ones
    lacking it rerun); ``jobs``: cells the local executor runs side by side (child processes; Ray: 1); ``only``:
    ``--only`` terms (:mod:`sepbench.selection`): only the cells they select run now, the others wait for a later
    run (their checkpoints kept)."""
    forget_termination()
    plan = plan_grid(grid, gpu_share, cell_timeout, keep_models=keep_models)
    selection = parse_selection(only, plan.cells)  # a term that names nothing of the grid: one line, exit 2
    store = RunStore(out or default_run_dir(grid))
    stream = progress_stream or sys.stderr
    with store.lock():
        # each dataset loaded (or downloaded) once here: one that cannot be had sets its cells aside, in one line
        plan, missing = set_aside_missing(plan, data_dir)
        # a training cell keeps its checkpoint in <run>/checkpoints/ and resumes from it after its last finished
        # epoch; the driver deletes it once the cell is recorded
        runner = make_executor(executor, data_dir=data_dir, address=address,
                               checkpoint_dir=store.checkpoints.absolute(), jobs=jobs)
        remove_partial_writes(store.root)
        previous, manifest_damage = read_previous_manifest(store)
        found = triage(plan, store, keep_stale=keep_stale,
                       device_kind=lambda cell: None if address else place(cell.resources.gpu).device.type,
                       explicit={entry.label: set(entry.params) for entry in grid.methods})
        store.prune_checkpoints({c.id for c in found.pending})  # what no cell of this grid will resume
        pending = [c for c in found.pending if selection.matches(c)]
        deferred = [c for c in found.pending if not selection.matches(c)]  # --only: left for a later run
        store.write_grid(grid.to_dict())
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        manifest: dict[str, Any] = {
            "name": grid.name,
            "grid_source": grid.source,
            "cells": [{"id": c.id, "label": c.label, "method": c.method, "scenario": c.scenario.name,
                       "sigma": c.sigma, "seed": c.seed} for c in plan.cells],
            "skipped": [asdict(s) for s in plan.skipped],
            **({"datasets_missing": [asdict(m) for m in missing]} if missing else {}),
            "stale_kept": {i: r for i, r in found.stale.items() if keep_stale},
            "not_in_grid": found.not_in_grid,
            "damaged": [{"id": i, "reason": r, "found": started} for i, r in found.damaged]
            + list((previous or {}).get("damaged") or []),
            "history": grid_history(previous, grid.to_dict(), started),
            "versions": versions(),
            "host": platform.node(),
            "executor": executor,
            "gpu_share": gpu_share,
            "cell_timeout": cell_timeout,
            **({"only": selection.describe(), "deferred": [c.id for c in deferred]} if selection else {}),
            "started": started,
            "ended": None,
        }
        store.write_manifest(manifest)
        _setup_log(store.root / "run.log")
        if any(c.budget for c in pending):
            store.checkpoint_folder()  # made here for the Ray workers that see the run directory (None: no checkpoints)
        # Ray packs one cell per requested CPU (usually 1); the local executor runs `jobs` at a time
        parallel = (os.cpu_count() or 1) / max(min((c.resources.cpu for c in pending), default=1), 1) \
            if executor == "ray" else jobs
        on_cpu = bool(pending) and not torch.cuda.is_available() and any(c.budget for c in pending)
        at_once, speed, observed = 1, 1.0, None
        reference = {c.id: (c.method, c.expected_seconds) for c in pending}  # at the reference speed
        if on_cpu:  # the plan's estimates are at the reference speed: scaled to this machine's (measured once)
            at_once = max(1, min(int(parallel), sum(1 for c in pending if c.budget)))  # cells training side by side
            speed = machine_speed(data_dir, say=lambda text: print(text, file=stream, flush=True), parallel=at_once)
            # and, for methods whose cells ran here before, by what those cells really took
            observed = None if fixed_speed() else ObservedSpeeds(observed_path(data_dir), speed_key(at_once))
            pending = [replace(c, expected_seconds=c.expected_seconds / (
                observed.speed(c.method, speed)[0] if observed is not None else speed)) for c in pending]
        resumed = {c.id: epochs for c in pending if c.budget and (epochs := checkpoint_epochs(
            store.checkpoints, c, None if address else place(c.resources.gpu).device.type))}
        pending = [replace(c, expected_seconds=c.expected_seconds * (1 - resumed[c.id] / c.budget.epochs))
                   if c.id in resumed else c for c in pending]  # a resumed cell has only its last epochs to train
        progress = RunProgress(len(pending), stream, parallel=parallel,
                               resumed={c.describe(): resumed[c.id] for c in pending if c.id in resumed},
                               expected={c.describe(): c.expected_seconds for c in pending} if on_cpu else None)
        # cells on a labelled dataset score recognisability with that dataset's classifier (trained once, here)
        scored = _labelled_sources(pending, data_dir)
        untrained = [s for s in scored if not recognise.is_cached(data_dir, s)]
        classifier = sum(recognise.training_estimate(data_dir, say=progress.line, sources=s) for s in untrained)
        progress.line(f"{grid.name}: {len(plan.cells)} cells planned, {len(plan.cells) - len(found.pending)} already "
                      f"done, {len(pending)} to run, {len(plan.skipped)} (method, scenario) pairs skipped → "
                      f"{store.root}")
        for line in ([manifest_damage] if manifest_damage else []) + describe(found, plan, keep_stale):
            progress.line(line)
        if selection:
            progress.line(f"  --only {' '.join(selection.describe())}: {len(deferred)} more cells of the grid wait "
                          "for a later run (their checkpoints are kept)")
        for gone in missing:
            progress.line(f"  skipped the {gone.cells} cells on dataset {gone.name}: {gone.message}")
        for skip in plan.skipped:
            progress.line(f"  skipped {skip.label} on {skip.scenario}: {skip.reason}")
        for label, why in plan.not_kept:
            progress.line(f"  not kept: {label}: {why}")
        if on_cpu:
            names = [recognise.describe(s) for s in untrained]
            first = "" if not names else f"{names[0]}'s one-off training, " if len(names) == 1 else \
                f"the one-off training of {', '.join(name[4:] for name in names)}, "
            start = RAY_START_SECONDS if executor == "ray" and not address else 0.0
            first += "Ray's start, " if start else ""
            total = classifier + start + expected_duration(pending, parallel)
            seen = sorted({c.method for c in pending if observed is not None and c.method in observed.samples})
            basis = f"; {len(seen)} of its {len({c.method for c in pending})} methods timed as their cells ran " \
                    "here before" if seen else ""
            again = f", {len(resumed)} of them resuming from their checkpoints" if resumed else ""
            progress.line(f"  no GPU found: expected about {format_duration(total)} on this CPU ({first}"
                          f"{len(pending)} cells{again}, {parallel:g} at a time{basis})")
            emulated = [c for c in pending if c.budget and c.budget.precision == "bf16"
                        and get_method(c.method).supports_bf16]
            if emulated and not cpu_has_bf16():
                progress.line(f"  {len(emulated)} cells train in bf16, which this CPU only emulates (no AVX512-BF16, "
                              f"AMX-BF16 or Arm BF16): about {1 / EMULATED_BF16_SPEED:.0f}× slower than fp32, as "
                              "the estimate counts; a GPU or a CPU with native bf16 runs them at full speed")
        for sources in scored:  # trained here, once, before the cells (which all score with it): said, never silent
            try:
                recognise.load_classifier(data_dir, sources, say=progress.line)
            except Exception as exc:  # an extra: the cells go on (and try again, or score without it)
                progress.line(f"  {recognise.describe(sources)[4:]} not available: {type(exc).__name__}: {exc}")
        failed: list[str] = []

        def record(result: Any) -> None:
            store.write_result(result, grid.name)
            store.remove_checkpoint(result.cell_id)  # its result is written: a rerun will not train it again
            if observed is not None and result.status == "done" and result.cell_id in reference:
                method, seconds = reference[result.cell_id]
                record_speed(observed_path(data_dir), speed_key(at_once), method, seconds,
                             float(result.meta.get("seconds") or 0.0), speed, at_once)
            logging.getLogger("sepbench.run").info("cell %s %s", result.cell_id, result.meta.get("status"))
            if result.status != "done":
                failed.append(result.cell_id)

        status = EXIT_OK
        try:
            runner.run(pending, record, progress)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (sepbench.signals.Terminated)
            terminated = is_termination(exc)
            how = "terminated (SIGTERM)" if terminated else "interrupted"
            progress.line(f"{how}: {progress.done} cells finished and kept; rerun to complete the grid")
            status = EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
        except OSError as exc:  # the run directory cannot take a cell's files: stop, keep what is written
            status = EXIT_DISK_FULL if is_disk_full(exc) else EXIT_BAD_INPUT
            progress.line(f"error: {describe_os_error(exc)}; run stopped: {progress.done} cells finished and kept, "
                          f"rerun the same command to complete the grid")
            manifest["stopped"] = describe_os_error(exc)
        manifest["ended"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if status == EXIT_OK:  # every cell recorded: no checkpoint is needed again (an empty folder goes too)
            store.prune_checkpoints({c.id for c in deferred})  # --only: those of the cells left for later stay
        try:
            store.write_manifest(manifest)
        except OSError as exc:
            if status not in (EXIT_DISK_FULL, EXIT_BAD_INPUT):
                raise
            progress.line(f"error: manifest.json could not be closed either ({describe_os_error(exc)}): it still "
                          "says the run has not ended")
        if failed and status == EXIT_OK:
            by_id = {c.id: c for c in plan.cells}
            progress.line(f"{len(failed)} cell(s) failed (rerun the same command to retry them):")
            for cell_id in failed:
                meta = store.cells / f"{cell_id}.json"
                progress.line(f"  {cell_id} {by_id[cell_id].describe()} → see {meta}")
            status = EXIT_FAILED
        if deferred and status in (EXIT_OK, EXIT_FAILED):
            progress.line(f"{len(deferred)} cells of the grid not run (--only): rerun without --only, or with "
                          "other terms, to complete it")
        return status


def _labelled_sources(cells: Sequence[Cell], data_dir: str | Path | None) -> list[Any]:
    """The source images of every labelled dataset the cells use (loaded already: set_aside_missing did), once each."""
    found: dict[str, Any] = {}
    for cell in cells:
        key = cell.dataset.key.split(":", 1)[0]  # the name and options: the classifier is per dataset, not per size
        if cell.dataset.labelled and not cell.scenario.sources and key not in found:  # one set per source: none
            sources = load_sources(data_dir, cell.dataset)
            if recognise.applies(sources):
                found[key] = sources
    return list(found.values())


def _setup_log(path: Path) -> None:
    logger = logging.getLogger("sepbench")
    for handler in list(logger.handlers):
        if isinstance(handler, logging.FileHandler):
            logger.removeHandler(handler)
            handler.close()
    if (path.exists() or path.is_symlink()) and not path.is_file():
        set_aside(path)  # a folder or a pipe in the way of the log
    handler = _QuietFileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


class _QuietFileHandler(logging.FileHandler):
    """The run log: a line it cannot write (a full disk) is dropped, not printed to stderr with a traceback."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 — logging's name
        pass
