"""Example separations (the paper's Fig. 4): the same test mixtures for every method, as small tiles that the page
lays out in a grid with a picker (page.py), so that 18 entries fit a screen or two instead of one tall column.

A tile per entry: its outputs in the order the scorer assigned them to the sources (``perm``), with each image's
MSE and SSIM beneath; one tile of the noisy input(s) and the ground truth. Columns: the stored test mixtures.
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
TILE_CELL, TILE_DPI = 0.78, 100  # inches per example image in a tile, and the tiles' resolution


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
    if image.ndim == 3:  # (C, H, W) of a colour dataset: shown in colour (matplotlib takes channels last)
        image = np.clip(np.moveaxis(image, 0, -1), 0.0, 1.0)
    ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("#bbbbbb")
    if caption:
        ax.set_xlabel(caption, fontsize=7, labelpad=1.5)


def _tile(images: list[list[np.ndarray]], row_labels: list[str], captions: list[list[str | None]] | None,
          title: str, path: Path) -> Path:
    """One small figure: rows of images (one column per test mixture), labelled at the left, titled above; the
    margins are fixed in inches so that every tile of a gallery has the same scale."""
    n_rows, n_columns = len(images), len(images[0])
    label, head, gap = 0.3, 0.26, (0.15 if captions else 0.04)
    width, height = label + TILE_CELL * n_columns + 0.04, head + (TILE_CELL + gap) * n_rows
    figure = plt.figure(figsize=(width, height))
    grid = figure.add_gridspec(n_rows, n_columns, left=label / width, right=1 - 0.04 / width, top=1 - head / height,
                               bottom=gap / height, hspace=gap / TILE_CELL, wspace=0.05)
    for r, m in np.ndindex(n_rows, n_columns):
        ax = figure.add_subplot(grid[r, m])
        _show(ax, images[r][m], captions[r][m] if captions else None)
        if m == 0:
            ax.set_ylabel(row_labels[r], fontsize=8, rotation=0, ha="right", va="center", labelpad=3)
    figure.text(0.01, 1 - 0.05 / height, title, fontsize=9, va="top", ha="left")
    figure.savefig(path, dpi=TILE_DPI)
    plt.close(figure)
    return path


def example_tiles(rows: pd.DataFrame, examples: dict[Key, dict[str, np.ndarray]], cells: dict[str, Key],
                  stem: Path, titles: dict[str, str] | None = None, on: str = "") -> list[tuple[str | None, Path]]:
    """The figure of one setting as small tiles, to be laid out in a grid: first the inputs and the ground truth
    (entry None), then per entry (in ``cells``' order) its outputs in the order the scorer assigned them to the
    sources, with each one's MSE | SSIM beneath. ``examples``: (run, cell) → its stored arrays; ``titles``: a tile
    heading per entry (default: the entry); ``on``: the dataset, named in the first tile's title. Files are
    ``<stem>_ref.png`` and ``<stem>_<k>_<entry>.png``; none
    are written when no example is stored."""
    stored = {entry: examples[cell] for entry, cell in cells.items() if cell in examples}
    if not stored:
        return []
    first = next(iter(stored.values()))
    y, x = first["y"], first["x"]
    n_examples, n_obs, n_sources = len(x), y.shape[1], x.shape[1]
    wanted = pd.MultiIndex.from_tuples([cells[e] for e in stored])
    picked = rows[pd.MultiIndex.from_frame(rows[["run", "cell"]]).isin(wanted)]
    scores = picked.set_index(["run", "cell", "mixture", "source"])
    inputs = [[np.clip(y[m, k], 0.0, None) / max(float(y[m, k].max()), 1e-6) for m in range(n_examples)]
              for k in range(n_obs)]
    truth = [[x[m, s] for m in range(n_examples)] for s in range(n_sources)]
    labels = [f"y{k + 1}" if n_obs > 1 else "y" for k in range(n_obs)] + [f"x{s + 1}" for s in range(n_sources)]
    tiles: list[tuple[str | None, Path]] = [(None, _tile(
        inputs + truth, labels, None, "inputs (rescaled) and ground truth" + (f" · {on}" if on else ""),
        stem.with_name(f"{stem.name}_ref.png")))]
    for k, (entry, arrays) in enumerate(stored.items()):
        images, captions = [], []
        for s in range(n_sources):
            images.append([arrays["estimates"][m, int(arrays["perm"][m, s])] for m in range(n_examples)])
            captions.append([_caption(scores, (*cells[entry], m, s)) for m in range(n_examples)])
        name = f"{stem.name}_{k:02d}_{_slug(entry)}.png"
        tiles.append((entry, _tile(images, [f"x̂{s + 1}" for s in range(n_sources)], captions,
                                   (titles or {}).get(entry, entry), stem.with_name(name))))
    return tiles


def _caption(scores: pd.DataFrame, key: tuple) -> str | None:
    return f"{scores.at[key, 'mse']:.4f} | {scores.at[key, 'ssim']:.3f}" if key in scores.index else None


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in text)[:40]


def load_examples(run_roots: dict[str, Path], keys: Sequence[Key]) -> dict[Key, dict[str, np.ndarray]]:
    """The stored example arrays of the given (run, cell)s (``run_roots``: run → directory); absent ones skipped."""
    found = {}
    for run, cell_id in keys:
        path = run_roots[run] / "examples" / f"{cell_id}.npz"
        if path.exists():
            with np.load(path) as npz:
                found[(run, cell_id)] = {key: npz[key] for key in npz.files}
    return found
