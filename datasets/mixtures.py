"""Mixtures from source images: training batches generated on the device, and fixed test sets."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch

from sepbench.datasets.forward import blur_sources, forward_options, observe
from sepbench.datasets.paper import paper_pairs
from sepbench.datasets.task import Task


class Batch(NamedTuple):
    """Observations ``y (N,K,h,w)``, sources ``x (N,S,H,W)``, clean superpositions ``z (N,K,H,W)``; for sources
    of C > 1 channels a channel axis after the second: ``(N,K,C,h,w)``, ``(N,S,C,H,W)``, ``(N,K,C,H,W)``."""

    y: torch.Tensor
    x: torch.Tensor
    z: torch.Tensor


def stable_seed(*parts: Any) -> int:
    """A 63-bit seed from any JSON-able parts, stable across processes and Python versions."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _generator(device: torch.device, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def draw_pairs(n_images: int, n_mixtures: int, n_sources: int, gen: torch.Generator) -> torch.Tensor:
    """Indices ``(N, S)`` of source images: each mixture's first image, then distinct random partners.

    When ``n_mixtures <= n_images`` every image is a first source at most once (as in the paper's
    "each image paired with a random partner").
    """
    device = gen.device
    if n_mixtures <= n_images:
        first = torch.randperm(n_images, generator=gen, device=device)[:n_mixtures]
    else:
        first = torch.randint(0, n_images, (n_mixtures,), generator=gen, device=device)
    columns = [first]
    for _ in range(n_sources - 1):
        offset = torch.randint(1, n_images, (n_mixtures,), generator=gen, device=device)
        columns.append((first + offset) % n_images)
    return torch.stack(columns, dim=1)


SetRanges = tuple[tuple[int, int], ...]  # per source: (offset, count) of its own set's images in one tensor


def draw_from_sets(sets: SetRanges, n_mixtures: int, gen: torch.Generator) -> torch.Tensor:
    """Indices ``(N, S)`` into images laid end to end, column s drawn from set s's range ``(offset, count)``.

    Each column is drawn as :func:`draw_pairs` draws the first (a permutation when ``n_mixtures <= count``); a
    set named again by a later source gives it distinct random partners within the set, as :func:`draw_pairs` does.
    """
    device = gen.device
    columns: list[torch.Tensor] = []
    for s, (offset, count) in enumerate(sets):
        earlier = next((j for j in range(s) if sets[j] == (offset, count)), None)
        if earlier is not None:
            step = torch.randint(1, count, (n_mixtures,), generator=gen, device=device)
            columns.append((columns[earlier] - offset + step) % count + offset)
        elif n_mixtures <= count:
            columns.append(torch.randperm(count, generator=gen, device=device)[:n_mixtures] + offset)
        else:
            columns.append(torch.randint(0, count, (n_mixtures,), generator=gen, device=device) + offset)
    return torch.stack(columns, dim=1)


def mix(images: torch.Tensor, pairs: torch.Tensor, weights: torch.Tensor, downsample: int, sigma: float,
        gen: torch.Generator, superpose: str = "sum", **forward: Any) -> Batch:
    """Gather source images ``(N_images, C, H, W)`` by ``pairs`` and apply the forward model, all on ``images``'
    device (``forward``: the noise model and blur, keyword arguments of
    :func:`sepbench.datasets.forward.observe`). One channel loses its axis (``x (N, S, H, W)``, as methods see
    it); C > 1 channels keep it, and each channel goes through the forward model as an image of its own (weights,
    pooling and noise act per channel), except that a blind random blur kernel is one per source and mixture,
    shared by its channels (drawn first, as :func:`observe` draws it)."""
    # index_select: the same gather as images[pairs], without advanced indexing's overhead (~5× on CPU)
    x = images.index_select(0, pairs.reshape(-1)).view(*pairs.shape, *images.shape[1:])
    if x.dim() == 4:  # (N, S, H, W): images given without a channel axis
        y, z = observe(x, weights, downsample, sigma, gen, superpose, **forward)
    elif x.shape[2] == 1:
        x = x.squeeze(2)
        y, z = observe(x, weights, downsample, sigma, gen, superpose, **forward)
    else:
        n, s, c, h, w = x.shape
        blurred = x
        if forward.get("blur") == "random":  # one kernel per source for all its channels, then no further blur
            blurred = blur_sources(x, "random", 0.0, forward.get("blur_size", 0), gen)
            forward = {**forward, "blur": "none"}
        folded = blurred.transpose(1, 2).reshape(n * c, s, h, w)  # every channel a mixture of its own
        y, z = observe(folded, weights, downsample, sigma, gen, superpose, **forward)
        y = y.view(n, c, *y.shape[1:]).transpose(1, 2).contiguous()
        z = z.view(n, c, *z.shape[1:]).transpose(1, 2).contiguous()
    return Batch(y, x, z)


class TrainingData:
    """Training mixtures generated batch by batch on the device, reproducibly from a seed.

    Every epoch draws fresh pairs and fresh noise (``pairs='fresh'``), or, with ``pairs='paper'``, runs the
    first ``n_mixtures`` of the paper's public code's fixed training pairs in their order every epoch (fresh
    noise each time, as its loader did); the validation set is fixed for the cell.
    """

    def __init__(self, images: torch.Tensor, task: Task, n_mixtures: int, seed: int,
                 n_validation: int | None = None, pairs: str = "fresh", sets: SetRanges | None = None) -> None:
        self.images = images
        self.sets = sets  # one set per source (images laid end to end, sepbench.source_sets); None: one set
        self.task = task
        self.device = images.device
        self.n_mixtures = n_mixtures
        self.weights = task.weight_matrix(self.device)
        self.superpose = task.superpose
        self.forward = {k: v for k, v in forward_options(task).items() if k != "superpose"}
        self.fixed_pairs = None
        if pairs == "paper":
            self.fixed_pairs = paper_pairs("train", n_mixtures, len(images)).to(self.device)
        elif pairs != "fresh":
            raise ValueError(f"unknown training pairs {pairs!r} (expected fresh or paper)")
        if sets is not None and pairs != "fresh":
            raise ValueError("the paper's training pairs index one set: not with one set per source")
        self._gen = _generator(self.device, stable_seed("train", seed))
        if n_validation is None:
            n_validation = min(1000, max(64, n_mixtures // 10))
        val_gen = _generator(self.device, stable_seed("validation", seed))
        val_pairs = self._draw(n_validation, val_gen)
        self.validation = mix(images, val_pairs, self.weights, task.downsample, task.sigma, val_gen, self.superpose,
                              **self.forward)

    def __len__(self) -> int:
        return self.n_mixtures

    def rng_state(self) -> torch.Tensor:
        """The state of the generator that draws the training pairs and noise (a CPU byte tensor): with
        :meth:`set_rng_state`, what a training checkpoint keeps so that a resumed run draws the same epochs."""
        return self._gen.get_state()

    def set_rng_state(self, state: torch.Tensor) -> None:
        """Restore a state :meth:`rng_state` returned (for data built on the same device from the same seed)."""
        self._gen.set_state(state.cpu())

    def _draw(self, n: int, gen: torch.Generator) -> torch.Tensor:
        if self.sets is not None:
            return draw_from_sets(self.sets, n, gen)
        return draw_pairs(len(self.images), n, self.task.n_sources, gen)

    def epoch(self, batch_size: int) -> Iterator[Batch]:
        """One pass over ``n_mixtures`` mixtures (fresh pairs, or the fixed ones), in batches of ``batch_size``."""
        pairs = self.fixed_pairs
        if pairs is None:
            pairs = self._draw(self.n_mixtures, self._gen)
        for start in range(0, self.n_mixtures, batch_size):
            yield mix(self.images, pairs[start:start + batch_size], self.weights, self.task.downsample,
                      self.task.sigma, self._gen, self.superpose, **self.forward)


def fixed_test_pairs(n_images: int, n_mixtures: int, n_sources: int, dataset_key: str,
                     pairs: str = "random", sets: SetRanges | None = None) -> torch.Tensor:
    """Indices ``(N, S)`` into the test images of the fixed test mixtures (e.g. to look up their labels):
    sepbench's seeded draw (``random``; with ``sets``, source s from set s), or the first ``n_mixtures`` of the
    paper's test pairs (``paper``)."""
    if pairs == "paper":
        return paper_pairs("test", n_mixtures, n_images)
    gen = _generator(torch.device("cpu"), stable_seed("test-pairs", dataset_key, n_mixtures))
    if sets is not None:
        return draw_from_sets(sets, n_mixtures, gen)
    return draw_pairs(n_images, n_mixtures, n_sources, gen)


def make_test_set(images: torch.Tensor, task: Task, n_mixtures: int, dataset_key: str, pairs: str = "random",
                  sets: SetRanges | None = None) -> Batch:
    """The fixed test mixtures of (dataset, scenario, σ): built on the CPU, the same for every method and seed.

    The source pairs depend on the dataset and the count only, so every scenario and σ reuses the same
    digits; the noise depends on the scenario's weights, its downsampling and σ. ``sets``: one set per source
    (``images`` the sets' test images end to end, ``dataset_key`` the sets' joint key).
    """
    images = images.cpu()
    indices = fixed_test_pairs(len(images), n_mixtures, task.n_sources, dataset_key, pairs, sets)
    noise_gen = _generator(torch.device("cpu"),
                           stable_seed("test-noise", dataset_key, task.weights, task.downsample, task.sigma))
    return mix(images, indices, task.weight_matrix(), task.downsample, task.sigma, noise_gen,
               **forward_options(task))
