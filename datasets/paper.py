"""The paper's public code's image pairs: mixture ``i`` of a split superimposes image ``i`` on image ``perm[i]``.

The two permutations ship with sepbench (datasets/paper_pairs/, uint16 ``.npy``, checked by sha256), so a run
needs nothing outside the package. They index MNIST in its standard order (the IDX files), so they fit only
the whole splits: 60,000 training and 10,000 test images.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

import numpy as np
import torch

from sepbench.errors import UserError

SPLIT_SIZES = {"train": 60000, "test": 10000}
SHA256 = {
    "train": "1ae6ce5dd87fc2b40bd96ee3fff2e8b7316bf953bcb31d53ddcfa7f7a9fc4a04",
    "test": "bb48847078048baa1bd8b74c1eb2f3b7526313ad5bf90a8d8eea555a91a66f93",
}
PAIR_MODES = ("random", "paper")  # test pairs: sepbench's seeded draw, or the public code's
TRAIN_PAIR_MODES = ("fresh", "paper")  # training pairs: drawn afresh each epoch, or the public code's fixed ones


@functools.cache
def permutation(split: str) -> np.ndarray:
    """The public code's permutation of ``split`` ('train' or 'test') as int64, after checking its checksum."""
    blob = (resources.files("sepbench.datasets") / "paper_pairs" / f"{split}.npy").read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != SHA256[split]:
        raise UserError(f"sepbench's paper_pairs/{split}.npy is damaged (sha256 {digest[:12]}…, expected "
                        f"{SHA256[split][:12]}…): reinstall sepbench")
    import io

    return np.load(io.BytesIO(blob), allow_pickle=False).astype(np.int64)


def paper_pairs(split: str, n_mixtures: int, n_images: int) -> torch.Tensor:
    """Indices ``(n_mixtures, 2)``: the first ``n_mixtures`` of the public code's pairs ``(i, perm[i])``.

    Raises :class:`UserError` when the pairs do not fit: ``n_images`` must be the whole split, and there
    are only as many pairs as images.
    """
    total = SPLIT_SIZES[split]
    if n_images != total:
        raise UserError(f"the paper's {split} pairs index all {total} MNIST {split} images; "
                        f"the dataset has {n_images} (set dataset.{split}_size: {total})")
    if not 0 < n_mixtures <= total:
        raise UserError(f"the paper has {total} {split} pairs; {n_mixtures} mixtures asked for")
    perm = torch.from_numpy(permutation(split)[:n_mixtures])
    return torch.stack([torch.arange(n_mixtures), perm], dim=1)
