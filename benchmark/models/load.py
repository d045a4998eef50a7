"""Finding a kept model in a run directory and rebuilding the fitted method from it.

The method is rebuilt from its card alone: the Task from the card's task, the class from the registry (after
importing the plugins the grid named), the state from the safetensors file. No object of the run is needed.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sepbench.api import Method
from sepbench.datasets.task import Task
from sepbench.errors import UserError
from sepbench.models.files import model_paths, read_kept
from sepbench.provenance import code_fingerprint
from sepbench.registry import get_method, import_plugins
from sepbench.store import RunStore


@dataclass(frozen=True)
class Choice:
    """The cell whose kept model is used, and how it was chosen."""

    cell_id: str
    label: str
    scenario: str
    sigma: float
    seed: int
    record: dict[str, Any]
    how: str  # "named" or "best kept entry by mean MSE …"

    def describe(self) -> str:
        return f"{self.label} · {self.scenario} · σ={self.sigma:g} · seed {self.seed}"


def _one(kind: str, found: list[Any], given: Any, flag: str, run: Path) -> Any:
    """The value of ``kind`` to use: ``given`` if the run has it, else the run's only one."""
    shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in found)
    if given is None:
        if len(found) == 1:
            return found[0]
        raise UserError(f"{run}: several {kind}s have kept models ({shown}): say which with {flag}")
    for value in found:
        if value == given or isinstance(value, float) and math.isclose(value, float(given), rel_tol=1e-9):
            return value
    raise UserError(f"{run}: no kept model for {kind} {given} (kept: {shown or 'none'})")


def choose(run_dir: str | Path, label: str | None = None, scenario: str | None = None,
           sigma: float | None = None, seed: int | None = None) -> Choice:
    """The cell of a run whose kept model to use; without ``label``, the entry with the lowest mean MSE at that
    (scenario, σ) among those with a kept model (the mean over seeds, as summary.csv's ``mse_mean``)."""
    store = RunStore(run_dir)
    if not store.root.is_dir():
        raise UserError(f"{store.root}: no such run directory")
    try:
        planned = store.read_manifest().get("cells") or []
    except ValueError:
        raise UserError(f"{store.root}/manifest.json: not valid JSON") from None
    records = {c["id"]: store.read_record(c["id"]) for c in planned if store.cell_status(c["id"]) == "done"}
    done = [c for c in planned if c["id"] in records]
    kept = [c for c in done if "model" in (records[c["id"]].get("files") or {})]
    labels = sorted({c["label"] for c in planned})
    if label is not None and label not in labels:
        raise UserError(f"{store.root}: no entry {label!r} (entries: {', '.join(labels)})")
    if not kept:
        raise UserError(f"{store.root}: no kept model (rerun its grid with `bench run --grid … --out {store.root} "
                        "--keep-models`: finished cells without a model run again, nothing else)")
    pool = [c for c in kept if label is None or c["label"] == label]
    if not pool:
        raise UserError(f"{store.root}: entry {label!r} has no kept model (rerun with --keep-models, or train: "
                        "{keep_model: true} in its grid entry)")
    scenario = _one("scenario", sorted({c["scenario"] for c in pool}), scenario, "--scenario", store.root)
    pool = [c for c in pool if c["scenario"] == scenario]
    sigma = _one("σ", sorted({c["sigma"] for c in pool}), sigma, "--sigma", store.root)
    pool = [c for c in pool if c["sigma"] == sigma]
    how = "named"
    if label is None:
        def mean_mse(name: str) -> float:
            values = [records[c["id"]]["mse"] for c in done
                      if c["label"] == name and c["scenario"] == scenario and c["sigma"] == sigma]
            return sum(values) / len(values)
        scores = {name: mean_mse(name) for name in {c["label"] for c in pool}}
        label = min(scores, key=lambda name: (scores[name], name))
        how = f"best kept entry of {scenario} at σ={sigma:g} by mean MSE ({scores[label]:.4g})"
        pool = [c for c in pool if c["label"] == label]
    seeds = sorted({c["seed"] for c in pool})
    if seed is None:
        seed = seeds[0]
    elif seed not in seeds:
        raise UserError(f"{store.root}: {label} · {scenario} · σ={sigma:g} has no kept model for seed {seed} "
                        f"(kept: {', '.join(map(str, seeds))})")
    cell = next(c for c in pool if c["seed"] == seed)
    return Choice(cell["id"], label, scenario, sigma, seed, records[cell["id"]], how)


def task_of(card: dict[str, Any]) -> Task:
    """The Task a kept model was trained for, from its card."""
    task = card["task"]
    forward = {k: kind(task[k]) for k, kind in (("noise_model", str), ("photons", float), ("blur", str),
                                                 ("blur_width", float), ("blur_size", int)) if k in task}
    return Task(tuple(tuple(float(v) for v in row) for row in task["weights"]), int(task["downsample"]),
                float(task["sigma"]), tuple(int(n) for n in task["source_shape"]), str(task["superpose"]),
                channels=int(task.get("channels", 1)), **forward)


def rebuild(card: dict[str, Any], state: dict[str, torch.Tensor], device: str | torch.device,
            where: str) -> tuple[Method, list[str]]:
    """The fitted method a card and its state describe, on ``device``, and notes (e.g. its code changed since)."""
    entry = card["entry"]
    import_plugins(card.get("plugins") or [], where=f"{where}: plugins")
    cls = get_method(entry["method"])
    notes = []
    recorded = (card.get("code") or {}).get("code")
    current = code_fingerprint(cls)[0]
    if recorded != current:
        notes.append(f"{where}: method {entry['method']!r} code changed since it was kept ({recorded} → {current}); "
                     "its estimates may differ from the run's")
    method = cls(task_of(card), **entry["params"])
    method.device = torch.device(device)
    try:
        method.load_state(state)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{where}: its state does not fit method {entry['method']!r} as it is now ({first}): "
                        "refused") from None
    method.precision_ = card.get("precision")
    method.history_ = list(card.get("history") or [])
    return method, notes


def load_kept(run_dir: str | Path, label: str | None = None, *, scenario: str | None = None,
              sigma: float | None = None, seed: int | None = None, device: str | torch.device = "cpu"
              ) -> tuple[Method, dict[str, Any], Choice, list[str]]:
    """:func:`load_model`, plus the card, the chosen cell and notes (for the command line)."""
    choice = choose(run_dir, label, scenario, sigma, seed)
    card, state = read_kept(run_dir, choice.cell_id, choice.record)
    method, notes = rebuild(card, state, device, str(model_paths(run_dir, choice.cell_id)[1]))
    return method, card, choice, notes


def load_model(run_dir: str | Path, label: str | None = None, *, scenario: str | None = None,
               sigma: float | None = None, seed: int | None = None, device: str | torch.device = "cpu") -> Method:
    """The fitted method a run kept for entry ``label`` at (scenario, σ, seed): call ``.separate(y)`` on
    observations ``(N, K, h, w)``. Each of scenario, σ, seed may be left out where the run has one only (the
    lowest seed otherwise); without ``label``, the best kept entry by mean MSE. A damaged file raises UserError."""
    method, _card, _choice, notes = load_kept(run_dir, label, scenario=scenario, sigma=sigma, seed=seed,
                                              device=device)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return method
