"""The leaderboard as a page: blocks for Markdown, self-contained HTML and the report's section, and the files
``bench leaderboard`` writes."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sepbench.errors import UserError
from sepbench.leaderboard import tracks
from sepbench.leaderboard.tables import track_tables
from sepbench.report.page import Block, Table, render_html, render_markdown


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value) \
        else format(value, spec)


COLUMNS = ["rank", "entry", "seeds", "parameters", "MSE [interval]", "seed std", "PSNR per image",
           "PSNR of mean MSE", "SSIM 7×7", "SSIM Gaussian", "best val. loss", "fit core-min", "train TFLOP", "note"]
EXPLAIN = ("Columns: rank by mean MSE with its 95 % interval (bootstrap over seeds and test mixtures); MSE mean over "
           "seeds [t interval whose error has a seed and a test-mixture term; one seed: bootstrap over mixtures]; "
           "seed-to-seed std of the MSE; PSNR as the mean of per-image values and as the PSNR of the mean MSE; SSIM "
           "with scikit-image's 7×7 window and with the Gaussian window (σ 1.5) of Wang et al.; the best validation "
           "loss (held-out training images); fit core-minutes per seed (a cell trained on a GPU: its GPU-minutes, "
           "marked; the devices are in the CSV); training TFLOP of the whole budget (matmuls, convolutions and "
           "attention of the training steps, counted; – where they cannot be, or the method's code changed since "
           "the cell trained). Entries "
           "of one setting scored on other test mixtures (their test fingerprints differ) are never ranked together: "
           "the test set met first keeps the setting's name, the others form tables named 'test set 2', ….")


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
            _fit_minutes(row),
            _fmt(getattr(row, "train_tflop", math.nan), ".3g"), ", ".join(notes)]


def _fit_minutes(row: Any) -> str:
    """Core-minutes of CPU cells; GPU-minutes of GPU cells, marked (cores do not measure a GPU's work)."""
    if not row.mixtures_seen:
        return "–"
    parts = [] if pd.isna(row.fit_core_seconds) else [f"{row.fit_core_seconds / 60:.1f}"]
    gpu = getattr(row, "fit_gpu_seconds", math.nan)
    parts += [] if pd.isna(gpu) else [f"{gpu / 60:.1f} GPU-min"]
    return "; ".join(parts) or "–"


def leaderboard_blocks(tables: dict[str, pd.DataFrame], heading: str = "h2") -> list[Block]:
    """The tables as page blocks: a ``heading`` per track (its budget and precision) and the level below it per
    setting; rows in rank order, the note column last."""
    known = {t.name: t for t in tracks.TRACKS}
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
                       "that train nothing stand in every track, once (from the track's own run where several "
                       "runs have them)."),
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
