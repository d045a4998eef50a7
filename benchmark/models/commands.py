"""``bench separate`` and ``bench mix``: a kept model applied to a user's observations, and observations made
from a user's own source images with a run's forward model (together: the demo)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from sepbench.datasets.forward import forward_options
from sepbench.datasets.mixtures import mix, stable_seed
from sepbench.errors import UserError
from sepbench.models.images import parse_scale, read_observations, read_source, write_figure, write_separation
from sepbench.models.load import load_kept


def _stems(paths: Sequence[Path]) -> list[str]:
    """Output names per input: the file's stem, or its whole name where two inputs share a stem."""
    stems = [p.stem for p in paths]
    return [p.name.replace(".", "-") if stems.count(p.stem) > 1 else p.stem for p in paths]


def separate_inputs(run_dir: str, inputs: Sequence[str], out: str, *, entry: str | None = None,
                    scenario: str | None = None, sigma: float | None = None, seed: int | None = None,
                    scale: str | None = None, device: str = "cpu") -> list[str]:
    """Separate every input with the run's kept model into ``out``; returns lines for the terminal. Every input
    is read and checked before anything is written."""
    method, card, choice, notes = load_kept(run_dir, entry, scenario=scenario, sigma=sigma, seed=seed, device=device)
    task = method.task
    value = parse_scale(scale)
    paths = [Path(p) for p in inputs]
    what = f"the model of {choice.label} (scenario {choice.scenario})"
    observations = [read_observations(path, task, value, what) for path in paths]
    lines = [*notes, f"model: {choice.describe()} ({choice.how}; its test MSE {card['scores']['mse']:.4g})"]
    for path, stem, y in zip(paths, _stems(paths), observations, strict=True):
        with torch.no_grad():
            estimates = method.separate(torch.from_numpy(y).to(method.device))
        # as the cell scores them: non-finite → 0, then clamped to the sources' range [0, 1]
        estimates = torch.nan_to_num(estimates.detach().float().cpu(), nan=0.0).clamp(0.0, 1.0).numpy()
        written = write_separation(Path(out), stem, y, estimates, task,
                                   f"{path.name} separated by {choice.describe()}")
        lines.append(f"{path}: {len(y)} observation(s) → {', '.join(str(p) for p in written)}")
    return lines


def mix_images(run_dir: str, images: Sequence[str], out: str, *, scenario: str | None, sigma: float,
               seed: int = 0) -> list[str]:
    """One observation from the user's source ``images`` through the run's scenario at noise ``sigma`` (seeded),
    written as ``out`` (.npy, float32, exact) and a PNG preview beside it; returns lines for the terminal."""
    from sepbench.grid import load_grid
    from sepbench.plan import scenario_task

    grid_file = Path(run_dir) / "grid.yaml"
    if not grid_file.is_file():
        raise UserError(f"{run_dir}: not a run directory (no grid.yaml)")
    grid = load_grid(str(grid_file))
    scenarios = {s.name: s for s in grid.scenarios}
    if scenario is None:
        if len(scenarios) > 1:
            raise UserError(f"{run_dir}: several scenarios ({', '.join(scenarios)}): say which with --scenario")
        scenario = next(iter(scenarios))
    if scenario not in scenarios:
        raise UserError(f"{run_dir}: no scenario {scenario!r} (scenarios: {', '.join(scenarios)})")
    if not (sigma >= 0 and np.isfinite(sigma)):
        raise UserError(f"--sigma: expected a finite σ ≥ 0, got {sigma:g}")
    target = Path(out)
    if target.suffix.lower() != ".npy":
        raise UserError(f"--out: expected a .npy file name, got {out!r}")
    task = scenario_task(scenarios[scenario], sigma, grid.dataset_for(scenarios[scenario]))
    if len(images) != task.n_sources:
        raise UserError(f"scenario {scenario} mixes {task.n_sources} sources: give {task.n_sources} images, got "
                        f"{len(images)}")
    images_ = torch.from_numpy(np.stack([read_source(Path(p), task) for p in images]))  # (S, H, W) or (S, C, H, W)
    generator = torch.Generator().manual_seed(stable_seed("bench-mix", seed))
    pairs = torch.arange(task.n_sources)[None]
    y, sources, _ = mix(images_, pairs, task.weight_matrix(), task.downsample, sigma, generator,
                        **forward_options(task))  # one channel: exactly observe(images_[None], ...)
    observation = y[0].numpy().astype(np.float32)
    target.parent.mkdir(parents=True, exist_ok=True)
    np.save(target, observation)
    preview = target.with_suffix(".png")
    write_figure(preview, y.numpy(), sources.numpy(), task, f"{scenario} at σ={sigma:g} (noise seed {seed})",
                 estimate_label="source")
    lines = [f"wrote {target} ({'×'.join(map(str, observation.shape))} float32, scenario {scenario}, σ={sigma:g}) "
             f"and its preview {preview}"]
    grid = load_grid(str(grid_file))
    noise = next((grid.sigmas_for(s) for s in grid.scenarios if s.name == scenario), grid.noise)
    if not any(np.isclose(sigma, s) for s in noise):
        lines.append(f"note: the run has no model at σ={sigma:g} (its σ: {', '.join(f'{s:g}' for s in noise)})")
    return lines
