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

    **Validation images are held out.** A fixed split of the training images (seeded by their number alone, so
    every method and seed of a dataset shares it; per set with one set per source) puts
    ``VALIDATION_SHARE`` of them aside (:func:`validation_split`): training mixtures never contain them, and the
    validation mixtures (best epoch, early choices) are made of them only. With ``pairs='paper'`` the training
    pairs are the public ones, and the held-out images are those none of the pairs used names.
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
        if self.fixed_pairs is not None:  # the public pairs; what they never name is held out
            used = torch.zeros(len(images), dtype=torch.bool, device=self.device)
            used[self.fixed_pairs.reshape(-1)] = True
            self.train_pool, self.train_sets_local, held = None, None, torch.nonzero(~used).flatten()
            if len(held) < 2 * task.n_sources:
                raise ValueError(f"the paper's first {n_mixtures} training pairs use {int(used.sum())} of the "
                                 f"{len(images)} training images: too few are left to validate on")
            self.val_pool, self.val_sets = held, None
        else:
            self.train_pool, self.train_sets_local, self.val_pool, self.val_sets = validation_split(
                len(images), sets, task.n_sources, self.device)
        if n_validation is None:
            n_validation = min(1000, max(64, n_mixtures // 10))
        val_gen = _generator(self.device, stable_seed("validation", seed))
        val_pairs = self.val_pool[self._draw_local(n_validation, val_gen, len(self.val_pool), self.val_sets)]
        self.validation = mix(images, val_pairs, self.weights, task.downsample, task.sigma, val_gen, self.superpose,
                              **self.forward)

    def __len__(self) -> int:
        return self.n_mixtures

    @property
    def n_validation_images(self) -> int:
        """How many training images are held out for validation."""
        return len(self.val_pool)

    def _draw_local(self, n: int, gen: torch.Generator, size: int, sets: SetRanges | None) -> torch.Tensor:
        if sets is not None:
            return draw_from_sets(sets, n, gen)
        return draw_pairs(size, n, self.task.n_sources, gen)

    def rng_state(self) -> torch.Tensor:
        """The state of the generator that draws the training pairs and noise (a CPU byte tensor): with
        :meth:`set_rng_state`, what a training checkpoint keeps so that a resumed run draws the same epochs."""
        return self._gen.get_state()

    def set_rng_state(self, state: torch.Tensor) -> None:
        """Restore a state :meth:`rng_state` returned (for data built on the same device from the same seed)."""
        self._gen.set_state(state.cpu())

    def _draw(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """Indices into ``images`` of ``n`` training mixtures, from the images not held out."""
        return self.train_pool[self._draw_local(n, gen, len(self.train_pool), self.train_sets_local)]

    def epoch(self, batch_size: int) -> Iterator[Batch]:
        """One pass over ``n_mixtures`` mixtures (fresh pairs, or the fixed ones), in batches of ``batch_size``."""
        pairs = self.fixed_pairs
        if pairs is None:
            pairs = self._draw(self.n_mixtures, self._gen)
        for start in range(0, self.n_mixtures, batch_size):
            yield mix(self.images, pairs[start:start + batch_size], self.weights, self.task.downsample,
                      self.task.sigma, self._gen, self.superpose, **self.forward)


VALIDATION_SHARE = 1 / 12  #: of a dataset's training images, held out for validation (MNIST: 5,000 of 60,000)


def validation_split(n_images: int, sets: SetRanges | None, n_sources: int, device: torch.device
                     ) -> tuple[torch.Tensor, SetRanges | None, torch.Tensor, SetRanges | None]:
    """The fixed split of ``n_images`` training images (laid end to end as ``sets``, or one set) into the images
    that training mixtures draw from and the ones held out for validation: ``(train_pool, train_sets,
    val_pool, val_sets)``, each pool the indices into the images, each ``sets`` the per-source ranges into its
    pool (None: one set). Seeded by the sizes alone: every method, seed and σ of a dataset shares the split."""
    ranges = sets if sets is not None else ((0, n_images),)
    distinct = list(dict.fromkeys(ranges))
    train_parts, val_parts, train_at, val_at = [], [], {}, {}
    train_offset = val_offset = 0
    for offset, count in distinct:
        held = max(n_sources + 1, round(count * VALIDATION_SHARE))
        if count - held < n_sources + 1:
            raise ValueError(f"{count} training images are too few to hold {held} out for validation "
                             f"(at least {2 * (n_sources + 1)} are needed)")
        gen = _generator(torch.device("cpu"), stable_seed("validation-images", count))
        order = (torch.randperm(count, generator=gen) + offset).to(device)
        val_parts.append(order[:held].sort().values)
        train_parts.append(order[held:].sort().values)
        val_at[(offset, count)], train_at[(offset, count)] = (val_offset, held), (train_offset, count - held)
        val_offset, train_offset = val_offset + held, train_offset + count - held
    train_pool, val_pool = torch.cat(train_parts), torch.cat(val_parts)
    if sets is None:
        return train_pool, None, val_pool, None
    return (train_pool, tuple(train_at[r] for r in sets), val_pool, tuple(val_at[r] for r in sets))


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


def recipe_fingerprint(images_fingerprint: str, n_images: int, task: Task, n_mixtures: int, dataset_key: str,
                         pairs: str = "random", sets: SetRanges | None = None) -> str:
    """A digest of the recipe of the fixed test mixtures :func:`make_test_set` makes: the source images (their
    fingerprint and the ids of those each mixture takes), the pairing, the forward model, σ and the noise seed.
    Exact across machines, where the mixtures' floats may differ by an ulp between CPUs; two cells with equal
    digests were scored on the same test set."""
    indices = fixed_test_pairs(n_images, n_mixtures, task.n_sources, dataset_key, pairs, sets)
    recipe = {"images": images_fingerprint, "n_images": n_images, "dataset_key": dataset_key, "pairs": pairs,
              "sets": sets, "ids": hashlib.sha256(indices.to(torch.int64).numpy().tobytes()).hexdigest(),
              "weights": task.weights, "downsample": task.downsample, "sigma": task.sigma,
              "shape": [task.channels, *task.source_shape], "forward": forward_options(task),
              "noise_seed": stable_seed("test-noise", dataset_key, task.weights, task.downsample, task.sigma)}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
