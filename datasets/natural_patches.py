"""natural-patches: square patches of the photographs scikit-image installs with itself — a non-digit set, offline.

Two fixed lists of photographs, disjoint: training patches come only from :data:`TRAIN_PHOTOS`, test patches only
from :data:`TEST_PHOTOS`, so no test patch overlaps a training photograph; near-duplicates stay on one side (the
motorcycle stereo pair both train; ``cat`` is ``chelsea`` and is not used). Only photographs that the wheel ships
are used (``skimage.data`` needs no download for them). Patches: ``patch`` × ``patch`` (default 32), top-left
corners on a grid of stride ``patch // 4`` (halved until the split has enough corners), near-flat windows (grey
standard deviation below 0.02, e.g. the black around the retina) left out, then 50,000 training and 5,000 test
corners drawn by a fixed seed; patches overlap within a split. Grey is ITU-R BT.601 luma of the RGB photographs;
``color: true`` gives 3 channels (grey photographs repeated on all three). Unlabelled. The fingerprint covers the
photographs' pixels, the options and the chosen corners.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from sepbench.datasets.base import Dataset, DatasetNotFound, SourceImages, fingerprint_of, register_dataset

TRAIN_PHOTOS = ("astronaut", "camera", "chelsea", "hubble_deep_field", "motorcycle_left", "motorcycle_right",
                "retina", "page", "grass", "gravel", "clock")
TEST_PHOTOS = ("coffee", "rocket", "immunohistochemistry", "coins", "moon", "brick", "text")
TRAIN_COUNT, TEST_COUNT = 50_000, 5_000
SEEDS = {"train": 23_0001, "test": 23_0002}
FLAT_STD = 0.02
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601
PATCH_RANGE = (8, 128)


def _loader(name: str) -> Callable[[], np.ndarray]:
    import skimage.data

    if name.startswith("motorcycle_"):
        side = 0 if name.endswith("left") else 1
        return lambda: skimage.data.stereo_motorcycle()[side]
    return getattr(skimage.data, name)


def photo(name: str) -> np.ndarray:
    """One photograph as uint8, (H, W) grey or (H, W, 3) RGB; DatasetNotFound if scikit-image lacks it."""
    try:
        image = np.asarray(_loader(name)())
    except (AttributeError, ImportError, OSError, ValueError) as exc:
        import skimage

        raise DatasetNotFound(f"natural-patches: scikit-image {skimage.__version__} does not ship the photograph "
                              f"{name!r} ({type(exc).__name__}): install scikit-image >= 0.22 from PyPI") from None
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise DatasetNotFound(f"natural-patches: photograph {name!r} is {image.dtype} {image.shape}, not 8-bit")
    return image[..., :3] if image.ndim == 3 else image


def _grey(image: np.ndarray) -> np.ndarray:
    """uint8 photograph → float64 grey in [0, 1] (BT.601 luma for RGB)."""
    if image.ndim == 2:
        return image / 255.0
    return image.astype(np.float64) @ np.array(LUMA) / 255.0


def _pixel_sha256(image: np.ndarray) -> str:
    digest = hashlib.sha256(str(image.shape).encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def _corners(grey: np.ndarray, patch: int, stride: int) -> np.ndarray:
    """Top-left corners (y, x) on the stride grid whose window is not near-flat."""
    h, w = grey.shape
    if h < patch or w < patch:
        return np.empty((0, 2), np.int64)
    ys, xs = np.arange(0, h - patch + 1, stride), np.arange(0, w - patch + 1, stride)
    s1 = np.pad(grey.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    s2 = np.pad((grey * grey).cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def window_sum(s: np.ndarray) -> np.ndarray:
        y0, x0 = ys[:, None], xs[None, :]
        return s[y0 + patch, x0 + patch] - s[y0, x0 + patch] - s[y0 + patch, x0] + s[y0, x0]

    n = patch * patch
    mean = window_sum(s1) / n
    var = np.maximum(window_sum(s2) / n - mean * mean, 0.0)
    keep = np.sqrt(var) >= FLAT_STD
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([yy[keep], xx[keep]], axis=1)


def choose_corners(greys: list[np.ndarray], patch: int, count: int, seed: int) -> list[np.ndarray]:
    """Per photograph, the chosen corners: ``count`` in all, drawn without replacement by ``seed``."""
    stride = max(1, patch // 4)
    while True:
        per_photo = [_corners(g, patch, stride) for g in greys]
        total = sum(len(c) for c in per_photo)
        if total >= count or stride == 1:
            break
        stride = max(1, stride // 2)
    if total < count:
        raise DatasetNotFound(f"natural-patches: only {total} {patch}×{patch} windows in the photographs, "
                              f"{count} needed: use a smaller patch")
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=count, replace=False))
    bounds = np.cumsum([0] + [len(c) for c in per_photo])
    return [c[chosen[(chosen >= lo) & (chosen < hi)] - lo] for c, lo, hi in zip(per_photo, bounds, bounds[1:],
                                                                                 strict=False)]


def _cut(image: np.ndarray, corners: np.ndarray, patch: int, color: bool) -> np.ndarray:
    """The patches at ``corners`` as float32 (n, C, patch, patch) in [0, 1]."""
    if color:
        rgb = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
        windows = sliding_window_view(rgb, (patch, patch), axis=(0, 1))  # (H', W', 3, p, p)
        return (windows[corners[:, 0], corners[:, 1]] / np.float32(255)).astype(np.float32)
    windows = sliding_window_view(_grey(image).astype(np.float32), (patch, patch))
    return windows[corners[:, 0], corners[:, 1]][:, None].astype(np.float32)


def split(names: tuple[str, ...], count: int, seed: int, patch: int, color: bool) -> tuple[torch.Tensor, list[str]]:
    """The patches of one split and the checksums that fingerprint it (photographs' pixels, then the corners)."""
    images = [photo(name) for name in names]
    corners = choose_corners([_grey(im) for im in images], patch, count, seed)
    patches = np.concatenate([_cut(im, c, patch, color) for im, c in zip(images, corners, strict=True)])
    corner_sha = hashlib.sha256(b"".join(np.ascontiguousarray(c, "<i8").tobytes() for c in corners)).hexdigest()
    return torch.from_numpy(np.clip(patches, 0.0, 1.0)), [_pixel_sha256(im) for im in images] + [corner_sha]


def load_natural_patches(patch: int = 32, color: bool = False) -> SourceImages:
    """The training and test patches (float32 (N, C, patch, patch) in [0, 1]); no labels."""
    train, train_sums = split(TRAIN_PHOTOS, TRAIN_COUNT, SEEDS["train"], patch, color)
    test, test_sums = split(TEST_PHOTOS, TEST_COUNT, SEEDS["test"], patch, color)
    import skimage

    fingerprint = fingerprint_of([*train_sums, *test_sums, f"patch={patch}", f"color={color}", f"flat<{FLAT_STD}"])
    return SourceImages("natural-patches", train, None, test, None, f"scikit-image {skimage.__version__}",
                        fingerprint)


@register_dataset("natural-patches")
class NaturalPatches(Dataset):
    """Patches of scikit-image's photographs: train and test from disjoint photographs; offline, unlabelled."""

    description = ("patches of the photographs scikit-image ships (11 train, 7 test photographs, disjoint); "
                   "grey BT.601 luma or color: true")
    image_size = (32, 32)
    channels = 1
    train_count = TRAIN_COUNT
    test_count = TEST_COUNT
    labelled = False
    options_help = {"patch": f"side of the square patches, {PATCH_RANGE[0]}..{PATCH_RANGE[1]} (default 32)",
                    "color": "true: 3 channels (grey photographs repeated); false (default): BT.601 luma"}

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        from sepbench.errors import UserError

        patch, color = self.options.get("patch", 32), self.options.get("color", False)
        if isinstance(patch, bool) or not isinstance(patch, int) or not PATCH_RANGE[0] <= patch <= PATCH_RANGE[1]:
            raise UserError(f"dataset 'natural-patches': option patch must be a whole number in "
                            f"{PATCH_RANGE[0]}..{PATCH_RANGE[1]}, got {patch!r}")
        if not isinstance(color, bool):
            raise UserError(f"dataset 'natural-patches': option color must be true or false, got {color!r}")
        self.patch, self.color = patch, color
        self.image_size = (patch, patch)
        self.channels = 3 if color else 1

    def source(self) -> str:
        return "the photographs installed with scikit-image (skimage.data); no download"

    def present(self, data_dir: Path) -> bool:
        try:
            for name in TRAIN_PHOTOS + TEST_PHOTOS:
                photo(name)
        except DatasetNotFound:
            return False
        return True

    def missing_message(self, data_dir: Path) -> str:
        return "natural-patches: scikit-image's photographs are missing: reinstall scikit-image (>= 0.22) from PyPI"

    def load(self, data_dir: Path, *, download: bool = True) -> SourceImages:
        return load_natural_patches(self.patch, self.color)
