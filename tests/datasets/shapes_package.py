"""The files of a third-party dataset plugin, ``bench-shapes``, as a user would write it (docs/datasets.md).

``shapes``: filled rectangles on black, 16×16, read from two .npy files in the data directory (one channel, or
three with ``color: true``); ``colour-average``: a method that declares colour support (the even split per
channel), ``grey-average`` the same without it;
``ghostset``: an entry point whose module does not exist (a broken plugin).
"""

SHAPES_PACKAGE = {
    "pyproject.toml": '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n',
    "setup.cfg": """\
[metadata]
name = bench-shapes
version = 0.1.0

[options]
packages = find:

[options.packages.find]
include = bench_shapes*

[options.entry_points]
bench.datasets =
    shapes = bench_shapes.data:Shapes
    ghostset = bench_shapes.missing:Ghost
bench.methods =
    colour-average = bench_shapes.method:ColourAverage
    grey-average = bench_shapes.method:GreyAverage
""",
    "bench_shapes/__init__.py": "",
    "bench_shapes/data.py": '''\
"""Filled rectangles on black, 16×16: a small dataset read from two .npy files in the data directory."""

import sys
from pathlib import Path

import numpy as np
import torch

from sepbench.datasets.base import Dataset, DatasetNotFound, SourceImages, fingerprint_of, sha256_file

FILES = ("shapes-train.npy", "shapes-test.npy")
COLOUR = (1.0, 0.6, 0.3)  # the three channels' share of each rectangle's brightness with color: true


def make_files(data_dir, n_train=400, n_test=100, seed=0):
    """Write the two files: uint8 images (N, 16, 16), one rectangle each."""
    rng = np.random.default_rng(seed)
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    for name, n in zip(FILES, (n_train, n_test)):
        images = np.zeros((n, 16, 16), np.uint8)
        for i in range(n):
            top, left = rng.integers(0, 10, 2)
            height, width = rng.integers(3, 7, 2)
            images[i, top:top + height, left:left + width] = rng.integers(128, 256)
        np.save(Path(data_dir) / name, images)


class Shapes(Dataset):
    """Filled rectangles on black."""

    description = "filled rectangles on black, 16×16"
    image_size = (16, 16)
    channels = 1
    train_count = 400
    test_count = 100
    labelled = False
    options_help = {"color": "three channels (each rectangle in one colour) instead of one"}

    def __init__(self, **options):
        super().__init__(**options)
        self.channels = 3 if options.get("color") else 1

    def source(self):
        return f"{' and '.join(FILES)} in the data directory (python -m bench_shapes.data DIR writes them)"

    def present(self, data_dir):
        return all((Path(data_dir) / name).is_file() for name in FILES)

    def missing_message(self, data_dir):
        return f"shapes: put {' and '.join(FILES)} in {data_dir} (python -m bench_shapes.data {data_dir} makes them)"

    def load(self, data_dir, *, download=True):
        if not self.present(data_dir):
            raise DatasetNotFound(self.missing_message(data_dir))
        paths = [Path(data_dir) / name for name in FILES]
        train, test = (np.load(path, allow_pickle=False) for path in paths)

        def images(array):
            x = torch.from_numpy(array).float().div(255).unsqueeze(1)  # (N, 1, 16, 16)
            return x * torch.tensor(COLOUR).view(1, 3, 1, 1) if self.channels == 3 else x

        fingerprint = fingerprint_of([sha256_file(path) for path in paths] + [str(self.channels)])
        return SourceImages(self.name, images(train), None, images(test), None, f"files:{data_dir}", fingerprint)


if __name__ == "__main__":
    make_files(sys.argv[1])
''',
    "bench_shapes/method.py": '''\
"""The even split of the observation, channel by channel: a method that declares colour support."""

from sepbench import Method, Requirements, upsample


class ColourAverage(Method):
    """Every output is up(Σ_k y_k) / Σ W, for one channel or several."""

    requires = Requirements(color=True)

    def separate(self, y):
        task = self.task
        total = y.sum(dim=1)  # (N, h, w), or (N, C, h, w) with C > 1 channels
        if task.channels == 1:
            total = total.unsqueeze(1)
        estimate = upsample(total, task.downsample) / float(task.weight_matrix().sum())  # (N, 1 | C, H, W)
        if task.channels == 1:
            return estimate.expand(-1, task.n_sources, -1, -1).contiguous()
        return estimate.unsqueeze(1).expand(-1, task.n_sources, -1, -1, -1).contiguous()


class GreyAverage(ColourAverage):
    """The same even split, declaring single-channel sources only (the default)."""

    requires = Requirements()
''',
}
