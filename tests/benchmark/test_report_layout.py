"""A report that reads at a glance with many entries: ranked summary tables, no figure against σ for one σ, legends
grouped by method family, the example separations as a compact grid with a picker, one warning for missing glyphs.

The fixture is a real run with 14 entries in one setting (untrained and tiny trained methods), reported for real.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from PIL import Image

from sepbench.grid import parse_grid
from sepbench.report import content, figures, fonts, write_report
from sepbench.report.styles import PLAIN_LEGEND, entry_legend, legend_columns, line_styles, palette
from sepbench.runner import run_grid
from tests.conftest import TINY_GRID

ODD = "平均-😀"  # a label with CJK and emoji: glyphs DejaVu Sans lacks
TRAIN = {"mixtures": 128, "epochs": 2}
METHODS = [  # 14 entries of three implementations, cheap ones: the report is what is tested here
    "average", {"method": "average", "label": ODD},
    *({"method": "ica", "label": f"ica-{fun}", "params": {"fun": fun}} for fun in ("cube", "logcosh", "exp")),
    {"method": "ica", "label": "ica-parallel", "params": {"algorithm": "parallel"}},
    *({"method": "fcsae", "label": f"fcsae-{hidden}-{loss}", "params": {"hidden": hidden, "loss": loss},
       "train": {"mixtures": 128, "epochs": 2}} for hidden in (8, 16, 24, 32) for loss in ("fixed", "pit")),
]
GRID = {**TINY_GRID, "name": "many", "scenarios": {"dual": TINY_GRID["scenarios"]["dual"]}, "noise": [0.01],
        "test": {"mixtures": 24}, "methods": METHODS}
# the leaderboard's setting (a): 18 entries of 9 implementations
LEADERBOARD = {"average": "average", "fcsae": "fcsae", "fcsae-pit": "fcsae", "convsep": "convsep",
               "convsep-pit": "convsep", "ligt": "ligt", "ligt-pit": "ligt", "ligt-batchseq": "ligt-batchseq",
               "convsep-res": "convsep-res", "convsep-res-pit": "convsep-res", "ligt-spatial": "ligt-spatial",
               "ligt-spatial-pit": "ligt-spatial", "unet-fixed": "unet", "patchformer-fixed": "patchformer",
               "unet": "unet", "patchformer": "patchformer", "unet-1h": "unet", "patchformer-1h": "patchformer"}


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> dict:
    """A real run with 14 entries, one scenario and one σ, and its report; the warnings and log lines it made."""
    out = tmp_path_factory.mktemp("layout") / "many"
    assert run_grid(parse_grid(GRID), out=out, executor="local") == 0
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger().addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            page = write_report(out)
    finally:
        logging.getLogger().removeHandler(handler)
    return {"dir": out, "html": page.read_text(), "warnings": caught, "logs": records}


def _rows(html: str, heading: str) -> list[list[str]]:
    """The body cells of the table that follows ``heading``."""
    table = html.split(heading, 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [re.findall(r"<td[^>]*>(?:<b>)?(.*?)(?:</b>)?</td>", row) for row in table.split("</tr>") if row]


def test_summary_tables_are_ranked_by_mean_mse_with_the_rank(many):
    summary = pd.read_csv(many["dir"] / "summary.csv").sort_values("mse_mean", kind="stable")
    expected = summary["label"].tolist()
    ranks = summary["mse_mean"].rank(method="min").astype(int).astype(str).tolist()  # ties share a rank
    assert len(expected) == 14 and ranks[0] == "1" and ranks[-1] == "14"
    for heading, rank in (("MSE (lower is better)", "rank"), ("PSNR (dB) (higher is better)", "rank (MSE)"),
                          ("SSIM (higher is better)", "rank (MSE)")):
        rows = _rows(many["html"], heading)
        assert [row[1] for row in rows] == [html_escape(e) for e in expected]  # one order: the main metric's
        assert [row[0] for row in rows] == ranks
        assert f"<th class=\"l\">{rank}</th><th class=\"l\">method</th>" in many["html"].split(heading, 1)[1]
    means = [float(row[5]) for row in _rows(many["html"], "MSE (lower is better)")]
    assert means == sorted(means)


def html_escape(text: str) -> str:
    import html

    return html.escape(text)


def test_ties_share_the_better_rank_and_each_setting_is_ranked_on_its_own():
    frame = pd.DataFrame({"entry": ["a", "b", "c", "a", "b", "c"], "scenario": ["s"] * 3 + ["t"] * 3,
                          "sigma": [0.1] * 6, "n": 10, "mse_mean": [0.3, 0.1, 0.1, 0.2, 0.5, 0.4]})
    for metric in ("psnr", "ssim"):
        frame[f"{metric}_mean"] = 1 - frame["mse_mean"]
    for stat in ("ci_low", "ci_high", "median", "iqr", "std"):
        for metric in ("mse", "psnr", "ssim"):
            frame[f"{metric}_{stat}"] = frame[f"{metric}_mean"]
    blocks = content.summary_tables(frame)
    table = next(b.table for b in blocks if b.kind == "table")
    assert [(row[0], row[1], row[2]) for row in table.rows] == [
        ("1", "b", "s"), ("1", "c", "s"), ("3", "a", "s"), ("1", "a", "t"), ("2", "c", "t"), ("3", "b", "t")]


def test_one_sigma_leaves_out_the_figures_against_sigma(many):
    names = {p.name for p in (many["dir"] / "figures").glob("*.png")}
    assert "vs_sigma.png" not in names and "recognised.png" not in names
    assert "Against noise level" not in many["html"] and "One noise level (σ = 0.01): no figure against σ" in \
        many["html"]
    assert {"box_mse.png", "learning_curves.png", "cost.png"} <= names
    # two σ: the figure is drawn (the same code on a summary with a second σ)
    summary = pd.read_csv(many["dir"] / "summary.csv").rename(columns={"label": "entry"})
    two = pd.concat([summary, summary.assign(sigma=0.1)], ignore_index=True)
    with fonts.covered_glyphs():  # as the report draws it: the CJK label's glyphs in one log line
        path = figures.metric_vs_sigma(two, ["mse"], list(summary["entry"]), many["dir"] / "two_sigmas.png")
    assert path.is_file() and Image.open(path).size[0] > 300


def test_the_legend_groups_families_in_a_few_columns():
    entries = list(LEADERBOARD)
    columns = legend_columns(entries, LEADERBOARD, max_columns=6)
    assert len(columns) <= 6 and len(columns[0]) <= 6  # 18 entries in at most 6 rows, not a list of 18
    flat = [item for column in columns for item in column if item is not None]
    assert [item for item in flat if not item.startswith("\0")] == [e for f in dict.fromkeys(LEADERBOARD.values())
                                                                     for e in entries if LEADERBOARD[e] == f]
    for family in ("unet", "patchformer", "ligt", "fcsae", "convsep"):  # each family whole in one column,
        column = next(c for c in columns if f"\0{family}" in c)           # under its header
        members = [e for e in entries if LEADERBOARD[e] == family]
        start = column.index(f"\0{family}")
        assert column[start + 1:start + 1 + len(members)] == members
    assert "\0average" not in flat  # a family of one needs no header
    colours = palette(entries, LEADERBOARD)
    assert len(set(colours.values())) == 18  # shades of a hue per family: still one colour per entry
    styles = line_styles(entries, LEADERBOARD)
    assert {styles[e]["ls"] for e in ("unet-fixed", "unet", "unet-1h")} == {"-", "--", ":"}


def test_learning_curves_of_18_entries_keep_a_short_legend(tmp_path):
    entries = list(LEADERBOARD)
    curves = pd.DataFrame([{"entry": e, "scenario": "paper", "sigma": 0.01, "seed": 0, "epoch": k + 1,
                            "val_loss": 0.1 / (k + 1 + i), "elapsed": 10.0 * (k + 1)}
                           for i, e in enumerate(entries) for k in range(3)])
    status = pd.DataFrame({"entry": entries, "scenario": "paper", "sigma": 0.01, "seed": 0,
                           "converged": [i % 2 == 0 for i in range(18)]})
    path = figures.learning_curves(curves, status, entries, tmp_path / "curves.png", LEADERBOARD)
    width, height = Image.open(path).size
    assert height < 640 and width < 1400  # one row of plots and a legend of at most 6 rows, at 110 dpi
    figure = plt.figure(figsize=(10.5, 3))
    handles = {e: figure.gca().plot([0, 1], [i, i])[0] for i, e in enumerate(entries)}
    legend = entry_legend(figure, handles, entries, LEADERBOARD)
    texts = [t.get_text() for t in legend.get_texts()]
    assert legend._ncols <= 6 and len(texts) <= 6 * 6
    bold = [t.get_text() for t in legend.get_texts() if t.get_fontweight() == "bold"]
    assert set(bold) == {"fcsae", "convsep", "ligt", "convsep-res", "ligt-spatial", "unet", "patchformer"}
    few = entry_legend(figure, {e: handles[e] for e in entries[:PLAIN_LEGEND]}, entries[:PLAIN_LEGEND])
    assert few._ncols == 1 and len(few.get_texts()) == PLAIN_LEGEND  # a few entries: a plain list
    plt.close(figure)


def test_examples_are_a_compact_grid_of_tiles_with_a_picker(many):
    html, directory = many["html"], many["dir"] / "figures"
    tiles = sorted(directory.glob("examples_*.png"))
    assert len(tiles) == 15  # the inputs and ground truth, and one tile per entry
    sizes = {p.name: Image.open(p).size for p in tiles}
    assert max(w for w, _ in sizes.values()) < 480  # small tiles, not one column 6,000 pixels tall:
    assert max(h for name, (_, h) in sizes.items() if not name.endswith("_ref.png")) < 240  # an entry's 2 rows
    assert max(h for name, (_, h) in sizes.items() if name.endswith("_ref.png")) < 400  # y1, y2, x1, x2
    gallery = html.split('<figure class="gallery">', 1)[1].split("</figure></div></figure>", 1)[0]
    boxes = re.findall(r'<input type="checkbox" checked value="([^"]*)">', gallery)
    ranked = pd.read_csv(many["dir"] / "summary.csv").sort_values("mse_mean", kind="stable")["label"]
    assert boxes == [html_escape(e) for e in ranked]  # a checkbox per entry, best first
    assert re.findall(r'<figure data-entry="([^"]*)">', gallery) == boxes  # and its tile, in the same order
    assert 'data-best="6"' in gallery and 'data-best="0"' in gallery
    assert "grid-template-columns:repeat(auto-fill" in html and "<script>" in html
    assert html.count("data:image/png;base64,") == len(list(directory.glob("*.png")))
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)  # still self-contained
    markdown = (many["dir"] / "report.md").read_text()
    assert all(f"(figures/{p.name})" in markdown for p in tiles)


def test_a_label_with_glyphs_no_font_has_gives_at_most_one_warning(many):
    glyphs = [w for w in many["warnings"] if "Glyph" in str(w.message)]
    assert glyphs == []  # matplotlib's one-per-glyph-per-draw warnings are gathered ...
    lines = [r.getMessage() for r in many["logs"] if r.name.startswith(("sepbench", "matplotlib"))]
    assert len(lines) <= 1  # ... into one line (none where a font with the glyphs is installed)
    if lines:
        assert "not in any installed font" in lines[0] and "平" in lines[0] and "均" in lines[0]
    assert f">{html_escape(ODD)}</td>" in many["html"]  # the label itself is kept as written


def test_other_warnings_still_pass_through():
    from sepbench.report.fonts import covered_glyphs, fallback_fonts

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with covered_glyphs() as missing:
            figure = plt.figure()
            figure.text(0.5, 0.5, "平均 ok")
            figure.savefig(Path("/dev/null"), format="png")
            plt.close(figure)
            warnings.warn("something else", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else"]
    assert missing == ({"平", "均"} if not fallback_fonts() else missing & {"平", "均"})


def test_an_installed_font_with_the_glyph_draws_it_without_a_warning(monkeypatch):
    from sepbench.report import fonts

    def draw(text: str) -> set[str]:
        with fonts.covered_glyphs() as missing:
            figure = plt.figure()
            figure.text(0.5, 0.5, text)
            figure.savefig(Path("/dev/null"), format="png")
            plt.close(figure)
        return missing

    monkeypatch.setattr(fonts, "FALLBACKS", ())
    assert draw("sum ⨋") == {"⨋"}  # DejaVu Sans lacks it ...
    monkeypatch.setattr(fonts, "FALLBACKS", ("Absent Font", "STIXGeneral"))  # ... STIX, shipped with matplotlib, has it
    assert fonts.fallback_fonts() == ["STIXGeneral"] and draw("sum ⨋") == set()


def test_a_scenario_named_after_its_dataset_is_named_once(monkeypatch):
    """Across several datasets a scenario is named with its dataset, unless its name already is the dataset's."""
    from sepbench.report.load import combine, setting_name

    assert setting_name("single", "mnist", several=True) == "single · mnist"
    assert setting_name("mnist", "mnist", several=True) == "mnist"
    assert setting_name("single", "mnist", several=False) == "single"

    class Run:  # the two fields combine() reads
        rows = pd.DataFrame({"scenario": ["mnist", "three", "natural-patches"], "label": ["a", "a", "a"],
                             "run": ["r", "r", "r"], "dataset": ["mnist", "mnist", "natural-patches"]})
        meta = {"c1": {"config": {"dataset": {"name": "mnist"}}},
                "c2": {"config": {"dataset": {"name": "natural-patches"}}}}

    import sepbench.report.load as load

    monkeypatch.setattr(load, "several_datasets", lambda runs: True)
    rows = combine([Run()])
    assert list(rows["scenario"]) == ["mnist", "three · mnist", "natural-patches"]
