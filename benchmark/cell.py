"""Running one cell: sources → mixtures → fit → separate → (NaN/inf: fail) → clamp → score. Runs in any process.

The result travels back to the driver as plain data (a DataFrame, dicts, arrays); only the driver writes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import platform
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sepbench.api import FitContext, TrainBudget
from sepbench.cell_guards import nonfinite_reason
from sepbench.datasets.mixtures import TrainingData, make_test_set, recipe_fingerprint
from sepbench.devices import Placement, place
from sepbench.metrics import score, ssim_fast, ssim_gaussian
from sepbench.paper_protocol import paper_protocol
from sepbench.plan import Cell
from sepbench.precision import no_tf32
from sepbench.provenance import provenance
from sepbench.recognise import recognise_outputs
from sepbench.record_times import seconds_before_resume
from sepbench.registry import get_method, import_plugins, method_origin
from sepbench.source_sets import cell_images
from sepbench.sources import load_sources
from sepbench.training_machines import note_attempt, read_attempts, trained_on

N_EXAMPLES = 5  # the first test mixtures, kept per cell for example figures
__all__ = ["CellResult", "load_sources", "run_cell", "score_sources"]


@dataclass
class CellResult:
    """What a cell sends back: its rows (None if it failed), its metadata, and example separations."""

    cell_id: str
    status: str  # "done" or "failed"
    meta: dict[str, Any]
    rows: pd.DataFrame | None = None
    examples: dict[str, np.ndarray] = field(default_factory=dict)
    model: Any = None  # a sepbench.models.KeptModel when the cell keeps its fitted method, else None


def score_sources(estimates: torch.Tensor, sources: torch.Tensor, fixed: bool = False) -> pd.DataFrame:
    """:func:`sepbench.metrics.score` for one channel ``(N, S, H, W)``; for C channels ``(N, S, C, H, W)`` the MSE
    (and the assignment) over all C·H·W values, and SSIM as the mean of the channels' SSIM. ``fixed``: add the
    fixed-order columns (output s against source s), for scenarios whose sources each come from their own set."""
    if estimates.dim() == 4:
        return score(estimates, sources, fixed=fixed)
    n, s, c, h, w = sources.shape

    def per_channel(ssim: Callable[[np.ndarray, np.ndarray], np.ndarray]
                    ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:  # (M, C·H, W) → mean of the C channels'
        return lambda est, ref: ssim(est.reshape(-1, h, w), ref.reshape(-1, h, w)).reshape(-1, c).mean(axis=1)

    return score(estimates.reshape(n, s, c * h, w), sources.reshape(n, s, c * h, w), ssim=per_channel(ssim_fast),
                 fixed=fixed, ssim_gauss=per_channel(ssim_gaussian))


def checkpoint_key(cell: Cell, origin: dict[str, Any]) -> str:
    """The key of a cell's training checkpoint: a hash of its id, its provenance (the method's code, versions, data,
    device kind) and its precision, so that a checkpoint made by other code is never resumed."""
    precision = cell.budget.precision if cell.budget is not None else None
    text = json.dumps([cell.id, origin, precision], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def checkpoint_epochs(folder: str | Path, cell: Cell, device_kind: str | None) -> int:
    """The epochs of ``cell``'s training that its checkpoint in ``folder`` holds, if the cell will resume from it
    (read as ``train_network`` reads it, with the key the cell computes on a ``device_kind`` device); 0 where there
    is none, it is another's or it cannot be read. For the run's estimate only: the cell itself decides."""
    path = Path(folder) / f"{cell.id}.pt"
    if cell.budget is None or not cell.data or device_kind is None or not path.is_file():
        return 0
    try:
        key = checkpoint_key(cell, provenance(get_method(cell.method), cell.data, device_kind))
    except Exception:  # noqa: BLE001 — a method no longer installed: the cell will say so when it runs
        return 0
    return _resumable_epochs(path, key, cell.budget)


def _resumable_epochs(path: Path, key: str, budget: TrainBudget) -> int:
    """The epochs a checkpoint with ``key`` at ``path`` holds, read as ``train_network`` will read it; 0 where it
    will not resume from it."""
    from sepbench.methods.training import _read_checkpoint  # the one definition of a resumable checkpoint

    quiet = logging.getLogger("sepbench.plan.checkpoints")  # an ignored checkpoint is said by its cell, once
    quiet.disabled = True
    state = _read_checkpoint(FitContext(budget=budget, logger=quiet, checkpoint=path, checkpoint_key=key))
    return 0 if state is None else int(state["epoch"])


def checkpoint_file(folder: str | Path, cell_id: str, logger: logging.Logger) -> Path | None:
    """``<folder>/<cell id>.pt``, the folder made if need be; None (with a warning) where it cannot be: the cell
    then trains without checkpoints (a Ray node without the run directory, a read-only file system)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(f"{folder} is not writable")
    except OSError as exc:
        logger.warning("no training checkpoints: cannot use %s (%s)", folder, exc)
        return None
    return folder / f"{cell_id}.pt"


def run_cell(cell: Cell, data_dir: str | Path | None = None, device: torch.device | None = None,
             progress: Callable[[dict[str, Any]], None] | None = None,
             gpu_ids: Sequence[int | str] | None = None, checkpoint_dir: str | Path | None = None) -> CellResult:
    """Run ``cell`` to the end; an exception from the method becomes a failed result, not a crash.

    ``device`` forces a device; else the cell runs on the GPU its executor gave it (``gpu_ids``), or on a GPU of
    this machine if it asks for one, else on the CPU (see :func:`sepbench.devices.place`).

    ``checkpoint_dir``: a cell that trains keeps its training checkpoint in ``<checkpoint_dir>/<cell id>.pt``
    (:attr:`FitContext.checkpoint`) and resumes from it, if it is this cell's (the key: :func:`checkpoint_key`);
    the record then says ``resumed_from_epoch``. A folder that cannot be made or written: no checkpoints."""
    started = time.time()
    placement = Placement(device) if device is not None else place(cell.resources.gpu, gpu_ids)
    device = placement.device
    meta: dict[str, Any] = {"id": cell.id, "config": cell.config(), **placement.record(),
                            "resources": asdict(cell.resources), "host": platform.node(),
                            "torch": torch.__version__, "started": started, "threads": torch.get_num_threads(),
                            "pid": os.getpid()}
    logger = logging.getLogger(f"sepbench.cell.{cell.id}")
    before = 0.0  # seconds of training before an interruption, for a cell resumed from its checkpoint
    try:
        images = cell_images(data_dir, cell.dataset, cell.scenario.sources)  # one set, or one per source
        sources = images.first
        if cell.data and images.fingerprint != cell.data:
            raise ValueError(f"the source images here ({sources.origin}, fingerprint {images.fingerprint}) are not "
                             f"the ones the cell names ({cell.data})")
        task = cell.task
        test = make_test_set(images.test, task, cell.test_mixtures, images.key, cell.test_pairs, images.test_sets)
        meta["test_fingerprint"] = recipe_fingerprint(images.fingerprint, len(images.test), task, cell.test_mixtures,
                                                        images.key, cell.test_pairs, images.test_sets)
        import_plugins(cell.plugins)
        meta["origin"] = method_origin(cell.method)
        meta["provenance"] = provenance(get_method(cell.method), images.fingerprint, device.type)
        method = get_method(cell.method)(task, **copy.deepcopy(cell.params))
        data = None
        if cell.budget is not None:
            data = TrainingData(images.training(device), task, cell.budget.mixtures, cell.seed,  # the cell's own copy
                                pairs=cell.budget.pairs, sets=images.train_sets)
            meta["validation"] = {"images": data.n_validation_images, "mixtures": len(data.validation.y)}
        ctx = FitContext(device=device, seed=cell.seed, budget=cell.budget or TrainBudget(),
                         progress=progress or (lambda info: None), logger=logger)
        if checkpoint_dir is not None and cell.budget is not None:
            ctx.checkpoint = checkpoint_file(checkpoint_dir, cell.id, logger)
            ctx.checkpoint_key = checkpoint_key(cell, meta["provenance"])
            if ctx.checkpoint is not None:  # which machine trains the epochs after the checkpoint's (if it resumes)
                note_attempt(ctx.checkpoint, ctx.checkpoint_key,
                             _resumable_epochs(ctx.checkpoint, ctx.checkpoint_key, cell.budget)
                             if ctx.checkpoint.is_file() else 0, meta)
        torch.manual_seed(cell.seed)
        t0 = time.perf_counter()
        with no_tf32():  # 'fp32' is fp32 on a GPU too (PyTorch's default lets convolutions use TF32)
            method.fit(data, ctx)
        meta["fit_seconds"] = time.perf_counter() - t0
        if ctx.resumed_from_epoch is not None:  # the epochs before the interruption count: the training took them
            before = seconds_before_resume(method.history_, ctx.resumed_from_epoch)
            meta.update(resumed_from_epoch=ctx.resumed_from_epoch, fit_seconds_before_resume=before,
                        fit_seconds=meta["fit_seconds"] + before)
            if ctx.checkpoint is not None:
                meta["trained_on"] = trained_on(read_attempts(ctx.checkpoint), ctx.checkpoint_key,
                                                ctx.resumed_from_epoch, ctx.budget.epochs, meta)
        t0 = time.perf_counter()
        with no_tf32():
            estimates = method.separate(test.y.to(device, copy=True))  # a copy: test.y is scored and kept below
        if device.type == "cuda":
            torch.cuda.synchronize()
        meta["separate_seconds"] = time.perf_counter() - t0
        expected = tuple(test.x.shape)
        if tuple(estimates.shape) != expected:
            raise ValueError(f"separate() returned shape {tuple(estimates.shape)}, expected {expected}")
        estimates = estimates.detach().float().cpu()
        if (reason := nonfinite_reason(estimates)) is not None:
            raise ValueError(reason)
        estimates = estimates.clamp(0.0, 1.0)
        t0 = time.perf_counter()
        rows = score_sources(estimates, test.x, fixed=images.distinct)  # + the fixed-order score: one set per source
        meta["score_seconds"] = time.perf_counter() - t0
        say = (lambda text: progress({"notice": text})) if progress else None
        flags = None if images.distinct else recognise_outputs(  # one set's classifier and test pairs only
            estimates, sources, cell.dataset.test_size, cell.dataset.key, data_dir, cell.test_pairs, say=say)
        if flags is not None:  # per row: is every source still readable by its dataset's classifier
            rows["recognised"] = flags
        if cell.test_pairs == "paper" and task.n_sources == 2:  # the paper's test set: its protocol too
            t0 = time.perf_counter()
            meta["paper_protocol"] = paper_protocol(method, test.y.clone(), test.x, estimates, rows, cell.seed)
            meta["paper_protocol_seconds"] = time.perf_counter() - t0
        meta["n_parameters"] = int(method.n_parameters())
        meta["history"] = [dict(record) for record in method.history_]
        meta["precision"] = method.precision_  # resolved ('auto' → fp32 | bf16); None: no network
        meta["mixtures_per_s"] = cell.test_mixtures / max(meta["separate_seconds"], 1e-9)
        examples = {
            "y": test.y[:N_EXAMPLES].numpy(), "x": test.x[:N_EXAMPLES].numpy(),
            "estimates": estimates[:N_EXAMPLES].numpy(),
            "perm": rows["perm"].to_numpy()[:N_EXAMPLES * task.n_sources].reshape(-1, task.n_sources),
        }
        rows.insert(0, "cell", cell.id)
        rows.insert(1, "method", cell.method)
        rows.insert(2, "label", cell.label)
        rows.insert(3, "scenario", cell.scenario.name)
        rows.insert(4, "sigma", cell.sigma)
        rows.insert(5, "seed", cell.seed)
        meta.update(status="done", seconds=time.time() - started + before, mse=float(rows["mse"].mean()),
                    ssim=float(rows["ssim"].mean()))
        result = CellResult(cell.id, "done", meta, rows, examples)
        if cell.keep_model:  # the fitted state and its card travel back with the result: the driver writes them
            from sepbench.models.card import kept_model

            result.model = kept_model(cell, method, meta, rows)
        return result
    except Exception as exc:  # a failing method must not take the run down
        meta.update(status="failed", seconds=time.time() - started + before, error=f"{type(exc).__name__}: {exc}",
                    traceback=traceback.format_exc())
        return CellResult(cell.id, "failed", meta)
