"""Digit recognisability: can a plain MNIST classifier still read every digit in a method's outputs?

A small CNN is trained once on the MNIST training digits (seeded), cached in the data dir as
``digit-classifier-v1.pt`` and loaded once per process. A test mixture counts as *recognised* when the
multiset of the labels predicted for its outputs equals the multiset of its true labels (order-free, so
independent of which output the scorer assigned to which source).
"""

from __future__ import annotations

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

CACHE_NAME = "digit-classifier-v1.pt"
SEED, EPOCHS, BATCH_SIZE, MAX_LR = 0, 2, 128, 3e-3
REFERENCE_SECONDS = 48.0  # its training on one thread at the calibration's reference speed (measured beside it)
_LOADED: dict[str, DigitClassifier] = {}
log = logging.getLogger("sepbench.recognise")


class DigitNet(nn.Module):
    """Two strided conv layers (28→14→7) and a small dense head: 0.2 M parameters, cheap on a CPU.

    Two epochs at batch 128 with a one-cycle learning rate reach about 98.8 % on the MNIST test digits.
    """

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 32, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


@dataclass
class DigitClassifier:
    """A trained network and what is known about it (test accuracy, where it is cached)."""

    net: DigitNet
    info: dict[str, Any]

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 128) -> np.ndarray:
        """Predicted digit of every image ``(..., H, W)`` (MNIST's size) in [0, 1], as an int array of shape ``(...)``;
        source images as a dataset gives them, ``(N, 1, H, W)``, give ``(N,)``.

        Small batches keep the activations in cache (faster on a CPU, the same logits bit for bit; timings in
        docs/performance.md, "Scoring").
        """
        lead = images.shape[:1] if images.dim() == 4 and images.shape[1] == 1 else images.shape[:-2]
        flat = images.detach().float().cpu().reshape(-1, 1, *images.shape[-2:])
        out = [self.net(flat[i:i + batch_size]).argmax(1) for i in range(0, len(flat), batch_size)]
        labels = torch.cat(out) if out else torch.zeros(0, dtype=torch.long)
        return labels.numpy().reshape(lead)


def train_classifier(sources: SourceImages, seed: int = SEED, epochs: int = EPOCHS,
                     batch_size: int = BATCH_SIZE) -> DigitClassifier:
    """Train on all MNIST training digits (Adam, one-cycle LR, cross-entropy); measure test accuracy."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = DigitNet()
    images, labels = sources.train, sources.train_labels  # (N, 1, H, W)
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
    predicted = classifier.predict(sources.test)
    classifier.info["test_accuracy"] = float((predicted == sources.test_labels.numpy()).mean())
    return classifier


def classifier_path(data_dir: str | Path | None = None) -> Path:
    """Where the classifier is cached: the data dir (``$BENCH_DATA`` or ``~/.cache/sepbench``)."""
    return (Path(data_dir).expanduser() if data_dir is not None else default_data_dir()) / CACHE_NAME


def _read(path: Path) -> DigitClassifier | None:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        net = DigitNet()
        net.load_state_dict(blob["state"])
        net.eval()
        return DigitClassifier(net, dict(blob["info"]))
    except (OSError, KeyError, RuntimeError, EOFError, ValueError):
        return None


def _write(path: Path, classifier: DigitClassifier) -> None:
    buffer = io.BytesIO()
    torch.save({"state": classifier.net.state_dict(), "info": classifier.info}, buffer)
    atomic_write(path, buffer.getvalue())


def is_cached(data_dir: str | Path | None = None) -> bool:
    """Whether the classifier is ready to load (no training, no wait)."""
    path = classifier_path(data_dir)
    return str(path) in _LOADED or (path.exists() and _read(path) is not None)


def training_estimate(data_dir: str | Path | None = None, threads: int | None = None, say: Say | None = None) -> float:
    """Seconds the one-off training should take here: the reference time over the machine's calibrated speed,
    shortened for more torch threads (a small network: the second thread is worth about 0.7 of the first)."""
    from sepbench.calibration import machine_speed

    threads = threads or torch.get_num_threads()
    return REFERENCE_SECONDS / machine_speed(data_dir, say) / (1 + 0.7 * (min(threads, 4) - 1))


def load_classifier(data_dir: str | Path | None = None, sources: SourceImages | None = None,
                    say: Say | None = None) -> DigitClassifier:
    """The cached classifier; trained (once, under a file lock so parallel cells and runs wait) if absent.
    ``say`` (default: the log) hears about a wait on the lock and about the training, with estimates."""
    path = classifier_path(data_dir)
    key = str(path)
    if key in _LOADED:
        return _LOADED[key]
    classifier = _read(path) if path.exists() else None
    if classifier is None:
        say = say or log.warning
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock_path = path.with_name(f".{CACHE_NAME}.lock")
            lock = open(lock_path, "a+")
        except OSError:  # a read-only data dir: train for this process only
            lock = None
        try:
            if lock is not None:
                lock_exclusive(lock, lock_path, f"the digit classifier, which another run is training (cached at "
                                                f"{path} once trained)", training_estimate(data_dir, say=say), say)
            classifier = _read(path) if path.exists() else None  # another process may have finished it
            if classifier is None:
                estimate = about(training_estimate(data_dir, say=say))
                say(f"  training the digit classifier once ({estimate} on this machine; cached at {path} for every "
                    "later run)")
                classifier = train_classifier(sources or load_mnist(data_dir))
                say(f"  … digit classifier trained in {format_duration(classifier.info['train_seconds'])} "
                    f"(test accuracy {classifier.info['test_accuracy']:.1%})")
                classifier.info["path"] = str(path)
                try:
                    _write(path, classifier)
                except OSError as exc:
                    log.warning("could not cache the digit classifier at %s: %s", path, exc)
        finally:
            if lock is not None:
                lock.close()
    _LOADED[key] = classifier
    return classifier


def recognised(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per mixture ``(N, S)`` → ``(N,)``: True where the predicted labels are the true ones, in any order."""
    return (np.sort(predicted, axis=1) == np.sort(truth, axis=1)).all(axis=1)


def mixture_labels(sources: SourceImages, test_size: int, n_mixtures: int, n_sources: int,
                   dataset_key: str, test_pairs: str = "random") -> np.ndarray:
    """True digits ``(N, S)`` of the fixed test mixtures (the same pairs the cell's test set uses)."""
    labels = sources.test_labels[:test_size]
    pairs = fixed_test_pairs(len(labels), n_mixtures, n_sources, dataset_key, test_pairs)
    return labels[pairs].numpy()


def recognise_outputs(estimates: torch.Tensor, sources: SourceImages, test_size: int, dataset_key: str,
                      data_dir: str | Path | None = None, test_pairs: str = "random",
                      say: Say | None = None) -> np.ndarray | None:
    """Per score row (mixture-major, source-minor): whether the row's mixture was recognised.

    None when the sources are not MNIST digits (the classifier would not apply), or when the classifier
    cannot be had: recognisability is an extra for the report and must never cost a cell its results.
    """
    if sources.name != "mnist" or estimates.dim() != 4 or tuple(estimates.shape[2:]) != sources.image_size:
        return None
    n_mixtures, n_sources = estimates.shape[:2]
    try:
        truth = mixture_labels(sources, test_size, n_mixtures, n_sources, dataset_key, test_pairs)
        predicted = load_classifier(data_dir, sources, say).predict(estimates)
    except Exception as exc:  # logged; the cell's scores stand without this column
        log.warning("digit recognisability skipped: %s: %s", type(exc).__name__, exc)
        return None
    return np.repeat(recognised(predicted, truth), n_sources)


def truth_recognised(sources: SourceImages, test_size: int, n_mixtures: int, n_sources: int,
                     dataset_key: str, data_dir: str | Path | None = None) -> np.ndarray:
    """The ceiling: per test mixture, whether the classifier recognises the true source images themselves."""
    images = sources.test[:test_size, 0]  # (N, H, W): MNIST has one channel
    pairs = fixed_test_pairs(len(images), n_mixtures, n_sources, dataset_key)
    predicted = load_classifier(data_dir, sources).predict(images[pairs])
    return recognised(predicted, sources.test_labels[:test_size][pairs].numpy())
