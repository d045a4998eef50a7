"""Example separations (the paper's Fig. 4): the same test mixtures for every method, side by side.

Rows: the noisy input(s); each method's outputs in the order the scorer assigned them to the sources
(``perm``), with that image's MSE and SSIM beneath; the ground truth. Columns: the stored test mixtures.
Every cell keeps the first test mixtures of its (scenario, σ), which are the same for every method and
seed; the first seed's cell stands for a method.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

MAX_FIGURES = 6


def choose_settings(rows: pd.DataFrame, limit: int = MAX_FIGURES) -> list[tuple[str, float]]:
    """Every (scenario, σ) if there are few; else, per scenario, the lowest and the highest σ."""
    settings = list(dict.fromkeys(zip(rows["scenario"], rows["sigma"], strict=True)))
    if len(settings) <= limit:
        return settings
    chosen: list[tuple[str, float]] = []
    for scenario in dict.fromkeys(s for s, _ in settings):
        sigmas = sorted(sigma for s, sigma in settings if s == scenario)
        chosen.extend((scenario, sigma) for sigma in dict.fromkeys([sigmas[0], sigmas[-1]]))
    return chosen[:limit]


Key = tuple[str, str]  # (run, cell id): cell ids repeat across runs that share a configuration


def example_cells(rows: pd.DataFrame, scenario: str, sigma: float, entries: Sequence[str]) -> dict[str, Key]:
    """Entry → (run, cell) of its first seed in this setting, for entries scored on the first one's test set."""
    part = rows[(rows["scenario"] == scenario) & (rows["sigma"] == sigma)]
    firsts = part.sort_values("seed", kind="stable").drop_duplicates("entry")
    firsts = firsts[firsts["testset"] == firsts["testset"].iloc[0]] if len(firsts) else firsts
    by_entry = {entry: (run, cell) for entry, run, cell in zip(firsts["entry"], firsts["run"], firsts["cell"],
                                                                strict=True)}
    return {entry: by_entry[entry] for entry in entries if entry in by_entry}


def _show(ax: plt.Axes, image: np.ndarray, caption: str | None = None) -> None:
    ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if caption:
        ax.set_xlabel(caption, fontsize=7.5, labelpad=2)


def example_figure(rows: pd.DataFrame, examples: dict[Key, dict[str, np.ndarray]], cells: dict[str, Key],
                   scenario: str, sigma: float, path: Path) -> Path | None:
    """Draw the figure for one setting; ``examples`` maps (run, cell) → its stored arrays. None if none stored."""
    stored = {entry: examples[cell] for entry, cell in cells.items() if cell in examples}
    if not stored:
        return None
    first = next(iter(stored.values()))
    y, x = first["y"], first["x"]
    n_examples, n_obs, n_sources = len(x), y.shape[1], x.shape[1]
    wanted = pd.MultiIndex.from_tuples([cells[e] for e in stored])
    picked = rows[pd.MultiIndex.from_frame(rows[["run", "cell"]]).isin(wanted)]
    scores = picked.set_index(["run", "cell", "mixture", "source"])
    labels: list[str] = [f"input y{k + 1}" if n_obs > 1 else "input y" for k in range(n_obs)]
    n_rows = n_obs + n_sources * len(stored) + n_sources
    figure, axes = plt.subplots(n_rows, n_examples, figsize=(1.45 * n_examples + 1.2, 1.55 * n_rows),
                                squeeze=False)
    for m in range(n_examples):
        for k in range(n_obs):
            _show(axes[k][m], np.clip(y[m, k], 0.0, None) / max(float(y[m, k].max()), 1e-6))
        row = n_obs
        for entry, arrays in stored.items():
            for s in range(n_sources):
                output = int(arrays["perm"][m, s])
                key = (*cells[entry], m, s)
                caption = None
                if key in scores.index:
                    caption = f"MSE {scores.at[key, 'mse']:.4f}\nSSIM {scores.at[key, 'ssim']:.3f}"
                _show(axes[row][m], arrays["estimates"][m, output], caption)
                if m == 0:
                    labels.append(f"{entry}\nx̂{s + 1}")
                row += 1
        for s in range(n_sources):
            _show(axes[row + s][m], x[m, s])
    labels += [f"ground truth\nx{s + 1}" for s in range(n_sources)]
    for r, label in enumerate(labels):
        axes[r][0].set_ylabel(label, fontsize=8.5, rotation=0, ha="right", va="center", labelpad=8)
    figure.suptitle(f"Example separations · {scenario} · σ = {sigma:g}\ntest mixtures 1–{n_examples}; "
                    "inputs rescaled to their own range", fontsize=10, y=1.0, va="bottom")
    figure.tight_layout(h_pad=0.3, w_pad=0.2)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def load_examples(run_roots: dict[str, Path], keys: Sequence[Key]) -> dict[Key, dict[str, np.ndarray]]:
    """The stored example arrays of the given (run, cell)s (``run_roots``: run → directory); absent ones skipped."""
    found = {}
    for run, cell_id in keys:
        path = run_roots[run] / "examples" / f"{cell_id}.npz"
        if path.exists():
            with np.load(path) as npz:
                found[(run, cell_id)] = {key: npz[key] for key in npz.files}
    return found
