"""Recognisability: can a plain classifier of the sources' dataset still read every source in a method's outputs?

MNIST's classifier ships with sepbench (``sepbench/classifiers/digit-classifier-v1.pt``, checked against its SHA-256
before use), so that every machine scores recognisability, and its ceiling, with the same network: training is
seeded, but not bit-reproducible across CPU instruction sets (98.83 % on one machine, 98.88 % on another). For any
other labelled dataset (and for MNIST when the shipped file is damaged) a small CNN is trained once on its training
split (seeded), cached in the data dir (``classifier-<dataset>-<fingerprint>-v1.pt``; MNIST's as
``digit-classifier-v1.pt``) and loaded once per process.
A test mixture counts as *recognised* when the multiset of the labels predicted for its outputs equals the multiset
of its true labels (order-free, so independent of which output the scorer assigned to which source). Unlabelled
datasets have nothing to recognise: their cells carry no such column.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sepbench.datasets.mixtures import fixed_test_pairs
from sepbench.datasets.mnist import SourceImages, default_data_dir, load_mnist
from sepbench.files import atomic_write
from sepbench.progress import format_duration
from sepbench.waits import Say, about, lock_exclusive

CACHE_NAME = "digit-classifier-v1.pt"  # MNIST's: the name it always had, so that existing caches stay valid
SHIPPED_DIR = Path(__file__).resolve().parent / "classifiers"
#: classifiers that ship with sepbench: dataset → (file in SHIPPED_DIR, its SHA-256, the images' fingerprint)
SHIPPED = {"mnist": ("digit-classifier-v1.pt", "766641e06485062831ecec8268b9defc9e6bd638f17d3a3213d38d462c2c62f8",
                     "4a871355db4133c7")}
SEED, EPOCHS, BATCH_SIZE, MAX_LR = 0, 2, 128, 3e-3
MIN_STEPS = 100  # a small training split gets more epochs (MNIST's 2 epochs are 938 steps: unchanged)
REFERENCE_SECONDS = 48.0  # MNIST's training on one thread at the calibration's reference speed (measured beside it)
_LOADED: dict[str, DigitClassifier | None] = {}
log = logging.getLogger("sepbench.recognise")


class DigitNet(nn.Module):
    """Two strided conv layers (H→H/2→H/4) and a small dense head, sized from the images' channels, size and the
    number of classes: for MNIST (1 × 28 × 28, 10 classes) 0.2 M parameters, cheap on a CPU.

    Two epochs at batch 128 with a one-cycle learning rate reach about 98.8 % on the MNIST test digits.
    """

    def __init__(self, channels: int = 1, image_size: tuple[int, int] = (28, 28), classes: int = 10) -> None:
        super().__init__()
        height, width = (-(-side // 4) for side in image_size)
        self.layers = nn.Sequential(
            nn.Conv2d(channels, 32, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * height * width, 128), nn.ReLU(), nn.Linear(128, classes))
        self.channels = channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


@dataclass
class DigitClassifier:
    """A trained network and what is known about it (dataset, test accuracy, where it is cached)."""

    net: DigitNet
    info: dict[str, Any]

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 128) -> np.ndarray:
        """Predicted class of every image in [0, 1] as an int array: one channel ``(..., H, W)`` → ``(...)`` (source
        images as a dataset gives them, ``(N, 1, H, W)``, give ``(N,)``); C channels ``(..., C, H, W)`` → ``(...)``.

        Small batches keep the activations in cache (faster on a CPU, the same logits bit for bit; timings in
        docs/performance.md, "Scoring").
        """
        channels = self.net.channels
        if channels == 1:
            lead = images.shape[:1] if images.dim() == 4 and images.shape[1] == 1 else images.shape[:-2]
        else:
            lead = images.shape[:-3]
        flat = images.detach().float().cpu().reshape(-1, channels, *images.shape[-2:])
        out = [self.net(flat[i:i + batch_size]).argmax(1) for i in range(0, len(flat), batch_size)]
        labels = torch.cat(out) if out else torch.zeros(0, dtype=torch.long)
        return labels.numpy().reshape(lead)


def classes_of(sources: SourceImages) -> int:
    """The number of classes: one more than the largest label of either split."""
    return int(max(sources.train_labels.max(), sources.test_labels.max())) + 1


def epochs_for(n_train: int, epochs: int = EPOCHS, batch_size: int = BATCH_SIZE) -> int:
    """``epochs``, or more for a small training split, so that it takes at least ``MIN_STEPS`` steps."""
    return max(epochs, -(-MIN_STEPS // max(-(-n_train // batch_size), 1)))


def train_classifier(sources: SourceImages, seed: int = SEED, epochs: int = EPOCHS,
                     batch_size: int = BATCH_SIZE) -> DigitClassifier:
    """Train on all of a labelled dataset's training images (Adam, one-cycle LR, cross-entropy); measure its
    accuracy on all its test images."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    shape = {"channels": sources.channels, "image_size": list(sources.image_size), "classes": classes_of(sources)}
    net = DigitNet(shape["channels"], sources.image_size, shape["classes"])
    images, labels = sources.train, sources.train_labels  # (N, C, H, W)
    epochs = epochs_for(len(images), epochs, batch_size)
    optimiser = torch.optim.Adam(net.parameters(), lr=MAX_LR)
    steps = epochs * -(-len(images) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=MAX_LR, total_steps=steps, pct_start=0.2)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            loss = nn.functional.cross_entropy(net(images[idx]), labels[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    net.eval()
    classifier = DigitClassifier(net, {"seed": seed, "epochs": epochs, "batch_size": batch_size,
                                       "train_seconds": time.perf_counter() - started, "origin": sources.origin})
    if sources.name != "mnist":  # MNIST's record stays as it was (its cached file predates these keys)
        classifier.info.update(dataset=sources.name, fingerprint=data_fingerprint(sources), **shape)
    predicted = classifier.predict(sources.test)
    classifier.info["test_accuracy"] = float((predicted == sources.test_labels.numpy()).mean())
    classifier.info["test_images"] = len(sources.test)
    return classifier


def data_fingerprint(sources: SourceImages) -> str:
    """The dataset's fingerprint; for a dataset that gives none, a hash of its images and labels."""
    if sources.fingerprint:
        return sources.fingerprint
    digest = hashlib.sha256()
    for tensor in (sources.train, sources.train_labels, sources.test, sources.test_labels):
        digest.update(str(tuple(tensor.shape)).encode() + tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def cache_name(sources: SourceImages | None = None) -> str:
    """The classifier's file: ``digit-classifier-v1.pt`` for MNIST (its one fingerprint), else
    ``classifier-<dataset>-<fingerprint>-v1.pt`` (options such as CIFAR-10's colour are in the fingerprint)."""
    if sources is None or sources.name == "mnist":
        return CACHE_NAME
    name = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in sources.name)
    return f"classifier-{name}-{data_fingerprint(sources)}-v1.pt"


def classifier_path(data_dir: str | Path | None = None, sources: SourceImages | None = None) -> Path:
    """Where the classifier of ``sources`` (default MNIST) is cached: the data dir (``$BENCH_DATA`` or
    ``~/.cache/sepbench``)."""
    return (Path(data_dir).expanduser() if data_dir is not None else default_data_dir()) / cache_name(sources)


def describe(sources: SourceImages | None = None) -> str:
    """What the page and the progress lines call the classifier: MNIST's is the digit classifier."""
    return "the digit classifier" if sources is None or sources.name == "mnist" else f"the {sources.name} classifier"


def shipped(sources: SourceImages | None = None, say: Say | None = None) -> DigitClassifier | None:
    """The classifier that ships with sepbench for ``sources`` (default MNIST), verified: None when none ships for
    them, when they are other images than it was trained on, or when its file is damaged (then said once)."""
    name = "mnist" if sources is None else sources.name
    if name not in SHIPPED:
        return None
    file, sha256, images = SHIPPED[name]
    if sources is not None and data_fingerprint(sources) != images:
        return None
    path = SHIPPED_DIR / file
    key = f"shipped:{path}"
    if key in _LOADED:
        return _LOADED[key]
    try:
        data = path.read_bytes()
    except OSError as exc:
        data, why = None, f"cannot be read ({exc})"
    else:
        found = hashlib.sha256(data).hexdigest()
        why = f"its SHA-256 is {found[:16]}…, not {sha256[:16]}…" if found != sha256 else ""
    classifier = _read(io.BytesIO(data), sources) if data is not None and not why else None
    if classifier is None:
        (say or log.warning)(f"  the {describe(sources)} shipped with sepbench ({path}) is damaged: "
                             f"{why or 'it cannot be loaded'}; training one here instead")
        _LOADED[key] = None  # said once per process
        return None
    classifier.info.update(path=str(path), sha256=sha256, shipped=True)
    _LOADED[key] = classifier
    return classifier


def _read(path: Path | io.BytesIO, sources: SourceImages | None = None) -> DigitClassifier | None:
    """The cached classifier, or None when it cannot be read or was made for images of another shape."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        info = dict(blob["info"])
        net = DigitNet(int(info.get("channels", 1)), tuple(info.get("image_size", (28, 28))),
                       int(info.get("classes", 10)))
        net.load_state_dict(blob["state"])
        net.eval()
    except (OSError, KeyError, RuntimeError, EOFError, ValueError, TypeError):
        return None
    if sources is not None and sources.name != "mnist" and \
            (net.channels, tuple(info.get("image_size", ()))) != (sources.channels, sources.image_size):
        return None
    return DigitClassifier(net, info)


def _write(path: Path, classifier: DigitClassifier) -> None:
    buffer = io.BytesIO()
    torch.save({"state": classifier.net.state_dict(), "info": classifier.info}, buffer)
    atomic_write(path, buffer.getvalue())


def is_cached(data_dir: str | Path | None = None, sources: SourceImages | None = None) -> bool:
    """Whether the classifier of ``sources`` (default MNIST) is ready to load (no training, no wait)."""
    if shipped(sources) is not None:
        return True
    path = classifier_path(data_dir, sources)
    return str(path) in _LOADED or (path.exists() and _read(path, sources) is not None)


def training_estimate(data_dir: str | Path | None = None, threads: int | None = None, say: Say | None = None,
                      sources: SourceImages | None = None) -> float:
    """Seconds the one-off training should take here: MNIST's reference time scaled by the work (images × pixels ×
    epochs; a third more per extra channel), over the machine's calibrated speed, shortened for more torch threads
    (a small network: the second thread is worth about 0.7 of the first)."""
    from sepbench.calibration import machine_speed

    work = 1.0
    if sources is not None and sources.name != "mnist":
        n, (height, width) = len(sources.train), sources.image_size
        work = (n * epochs_for(n) * height * width) / (60000 * EPOCHS * 28 * 28) * (1 + 0.35 * (sources.channels - 1))
    threads = threads or torch.get_num_threads()
    return REFERENCE_SECONDS * work / machine_speed(data_dir, say) / (1 + 0.7 * (min(threads, 4) - 1))


def load_classifier(data_dir: str | Path | None = None, sources: SourceImages | None = None,
                    say: Say | None = None) -> DigitClassifier:
    """The cached classifier of ``sources`` (default MNIST); trained (once, under a file lock so parallel cells and
    runs wait) if absent; the one that ships with sepbench where there is one (MNIST's). ``say`` (default: the log)
    hears about a wait on the lock and about the training."""
    if (found := shipped(sources, say)) is not None:
        return found
    path = classifier_path(data_dir, sources)
    key = str(path)
    if key in _LOADED:
        return _LOADED[key]
    what = describe(sources)
    classifier = _read(path, sources) if path.exists() else None
    if classifier is None:
        say = say or log.warning
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock_path = path.with_name(f".{path.name}.lock")
            lock = open(lock_path, "a+")
        except OSError:  # a read-only data dir: train for this process only
            lock = None
        try:
            if lock is not None:
                lock_exclusive(lock, lock_path, f"{what}, which another run is training (cached at {path} once "
                                                "trained)", training_estimate(data_dir, say=say, sources=sources), say)
            classifier = _read(path, sources) if path.exists() else None  # another process may have finished it
            if classifier is None:
                estimate = about(training_estimate(data_dir, say=say, sources=sources))
                say(f"  training {what} once ({estimate} on this machine; cached at {path} for every later run)")
                classifier = train_classifier(sources or load_mnist(data_dir))
                say(f"  … {what} trained in {format_duration(classifier.info['train_seconds'])} "
                    f"(test accuracy {classifier.info['test_accuracy']:.1%})")
                classifier.info["path"] = str(path)
                try:
                    _write(path, classifier)
                except OSError as exc:
                    log.warning("could not cache %s at %s: %s", what, path, exc)
        finally:
            if lock is not None:
                lock.close()
    _LOADED[key] = classifier
    return classifier


def applies(sources: SourceImages) -> bool:
    """Whether recognisability can be measured on ``sources``: a registered dataset that declares labels and has
    them (an unlabelled one, natural-patches say, has nothing to recognise)."""
    from sepbench.datasets.registry import dataset_class

    if sources.train_labels is None or sources.test_labels is None:
        return False
    try:
        return bool(dataset_class(sources.name).labelled)
    except Exception:  # noqa: BLE001 — an unknown or broken dataset: no classifier is made for it
        return False


def recognised(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per mixture ``(N, S)`` → ``(N,)``: True where the predicted labels are the true ones, in any order."""
    return (np.sort(predicted, axis=1) == np.sort(truth, axis=1)).all(axis=1)


def mixture_labels(sources: SourceImages, test_size: int, n_mixtures: int, n_sources: int,
                   dataset_key: str, test_pairs: str = "random") -> np.ndarray:
    """True labels ``(N, S)`` of the fixed test mixtures (the same pairs the cell's test set uses)."""
    labels = sources.test_labels[:test_size]
    pairs = fixed_test_pairs(len(labels), n_mixtures, n_sources, dataset_key, test_pairs)
    return labels[pairs].numpy()


def recognise_outputs(estimates: torch.Tensor, sources: SourceImages, test_size: int, dataset_key: str,
                      data_dir: str | Path | None = None, test_pairs: str = "random",
                      say: Say | None = None) -> np.ndarray | None:
    """Per score row (mixture-major, source-minor): whether the row's mixture was recognised.

    None when the sources have no labels (see :func:`applies`) or the outputs are not the sources' shape, or when the
    classifier cannot be had: recognisability is an extra for the report and must never cost a cell its results.
    """
    shape = sources.image_size if sources.channels == 1 else (sources.channels, *sources.image_size)
    if not applies(sources) or estimates.dim() != 2 + len(shape) or tuple(estimates.shape[2:]) != shape:
        return None
    n_mixtures, n_sources = estimates.shape[:2]
    try:
        truth = mixture_labels(sources, test_size, n_mixtures, n_sources, dataset_key, test_pairs)
        predicted = load_classifier(data_dir, sources, say).predict(estimates)
    except Exception as exc:  # logged; the cell's scores stand without this column
        log.warning("recognisability skipped: %s: %s", type(exc).__name__, exc)
        return None
    return np.repeat(recognised(predicted, truth), n_sources)


def truth_recognised(sources: SourceImages, test_size: int, n_mixtures: int, n_sources: int,
                     dataset_key: str, data_dir: str | Path | None = None, test_pairs: str = "random") -> np.ndarray:
    """The ceiling: per test mixture (the cells' own pairs: ``test_pairs``), whether the classifier recognises the
    true source images themselves."""
    images = sources.test[:test_size]  # (N, C, H, W)
    images = images[:, 0] if sources.channels == 1 else images  # one channel: (N, H, W), as estimates have it
    pairs = fixed_test_pairs(len(images), n_mixtures, n_sources, dataset_key, test_pairs)
    predicted = load_classifier(data_dir, sources).predict(images[pairs])
    return recognised(predicted, sources.test_labels[:test_size][pairs].numpy())
