"""Reading a user's observations and source images (NumPy, or PNG/JPEG/TIFF through scikit-image) and writing
estimates and figures. Every mismatch with the task is one line naming the size wanted.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from sepbench.datasets.task import Task
from sepbench.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
FIGURE_ROWS = 8  # mixtures drawn in one figure at most


def parse_scale(text: str | None) -> float | None:
    """``--scale``: a positive number or fraction (``2/255``): the observation value of one image unit."""
    if text is None:
        return None
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise UserError(f"--scale: expected a positive number or fraction such as 2/255, got {text!r}") from None
    if not value > 0:
        raise UserError(f"--scale: expected a positive number, got {text!r}")
    return value


def _read_array(path: Path) -> np.ndarray:
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)  # plain arrays only: nothing in the file can run
        if suffix in IMAGE_SUFFIXES:
            from skimage import io  # here: scikit-image's import takes a second

            return np.asarray(io.imread(path))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot be read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                        ) from None
    raise UserError(f"{path}: expected a .npy array or an image ({', '.join(IMAGE_SUFFIXES)})")


def _shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))


def read_colour_observations(path: Path, task: Task, scale: float | None, what: str) -> np.ndarray:
    """Colour observations ``(N, K, C, h, w)`` float32: a float .npy of shape (C, h, w) [K = 1], (K, C, h, w) or
    (N, K, C, h, w), or for one detector an RGB image (h, w, C) whose values ``scale`` converts."""
    k, c, (h, w) = task.n_observations, task.channels, task.observation_shape
    wanted = f"{what} takes {k} observation(s) of {c} channels of {h}×{w} pixels"
    array = _read_array(path)
    if path.suffix.lower() == ".npy":
        if not np.issubdtype(array.dtype, np.floating):
            raise UserError(f"{path}: a {array.dtype} array; expected float32 observations on their own scale "
                            f"({wanted})")
        array = array[None] if array.ndim == 3 and k == 1 else array
        array = array[None] if array.ndim == 4 else array
        if array.ndim != 5 or array.shape[1:] != (k, c, h, w):
            raise UserError(f"{path}: an array of shape {_shape_text(array.shape)}; {wanted} "
                            f"(shape {k}×{c}×{h}×{w}, or N×{k}×{c}×{h}×{w} for N observations)")
        return _finite(path, array.astype(np.float32))
    if k != 1:
        raise UserError(f"{path}: an image holds one colour observation; {wanted}: give them as a .npy array")
    if scale is None:
        raise UserError(f"{path}: an image needs --scale, the observation value of one pixel unit (e.g. 2/255 "
                        "for an 8-bit image of one detector's sum of two [0, 1] images)")
    if array.ndim == 3 and array.shape[-1] == 4 and c == 3:
        array = array[..., :3]  # an alpha channel carries no light
    if array.ndim != 3 or array.shape != (h, w, c):
        raise UserError(f"{path}: an image of shape {_shape_text(array.shape)}; {wanted} (an {h}×{w} RGB image)")
    return _finite(path, (np.moveaxis(array, -1, 0).astype(np.float64) * scale).astype(np.float32)[None, None])


def _finite(path: Path, observations: np.ndarray) -> np.ndarray:
    if not np.isfinite(observations).all():
        raise UserError(f"{path}: holds values that are not finite numbers")
    return observations


def read_observations(path: Path, task: Task, scale: float | None, what: str) -> np.ndarray:
    """Observations ``(N, K, h, w)`` float32 from ``path``: a float .npy of shape (h, w) [K = 1], (K, h, w) or
    (N, K, h, w) on the observation's own scale, or an image (K channels) whose values ``scale`` converts;
    ``(N, K, C, h, w)`` for a colour task (:func:`read_colour_observations`)."""
    if task.channels > 1:
        return read_colour_observations(path, task, scale, what)
    k, (h, w) = task.n_observations, task.observation_shape
    wanted = f"{what} takes {k} channel(s) of {h}×{w} pixels"
    array = _read_array(path)
    if path.suffix.lower() == ".npy":
        if not np.issubdtype(array.dtype, np.floating):
            raise UserError(f"{path}: a {array.dtype} array; expected float32 observations on their own scale "
                            f"({wanted})")
        if array.ndim == 2 and k == 1:
            array = array[None]
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or array.shape[1:] != (k, h, w):
            raise UserError(f"{path}: an array of shape {_shape_text(array.shape)}; {wanted} "
                            f"(shape {k}×{h}×{w}, or N×{k}×{h}×{w} for N observations)")
        observations = array.astype(np.float32)
    else:
        if scale is None:
            raise UserError(f"{path}: an image needs --scale, the observation value of one pixel unit (e.g. 2/255 "
                            "for an 8-bit image of one detector's sum of two [0, 1] images)")
        if array.ndim == 2:
            array = array[None]
        elif array.ndim == 3 and array.shape[1:] == (h, w):
            pass  # channels first (a multi-page TIFF)
        elif array.ndim == 3:
            array = np.moveaxis(array, -1, 0)  # channels last, as image files hold them
        if array.ndim != 3 or array.shape != (k, h, w):
            size = f"{array.shape[1]}×{array.shape[2]} pixels" if array.ndim == 3 else f"shape {array.shape}"
            channels = array.shape[0] if array.ndim == 3 else "?"
            raise UserError(f"{path}: an image of {channels} channel(s) of {size}; {wanted}")
        observations = (array.astype(np.float64) * scale).astype(np.float32)[None]
    return _finite(path, observations)


def read_source(path: Path, task: Task) -> np.ndarray:
    """One source image ``(H, W)`` in [0, 1]: grey levels of an image (colour is converted to grey), or a float .npy;
    for a colour task ``(C, H, W)``: an RGB image, or a float .npy (C, H, W)."""
    from skimage.color import rgb2gray
    from skimage.util import img_as_float

    height, width = task.source_shape
    array = _read_array(path)
    if task.channels > 1:
        if array.ndim == 3 and path.suffix.lower() != ".npy":
            array = np.moveaxis(array[..., :task.channels], -1, 0)  # RGB(A) → (C, H, W)
        if array.shape != (task.channels, height, width):
            raise UserError(f"{path}: an image of shape {_shape_text(array.shape)}; the scenario mixes colour "
                            f"{height}×{width} sources of {task.channels} channels")
    elif array.ndim == 3 and array.shape[-1] in (3, 4):
        array = rgb2gray(array[..., :3])
    if task.channels == 1 and (array.ndim != 2 or array.shape != (height, width)):
        raise UserError(f"{path}: an image of shape {_shape_text(array.shape)}; the scenario mixes grey "
                        f"{height}×{width} sources (resize or crop it first)")
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        return img_as_float(array).astype(np.float32)
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise UserError(f"{path}: float sources must lie in [0, 1], got [{array.min():g}, {array.max():g}]")
    return array.astype(np.float32)


def write_png(path: Path, image: np.ndarray) -> None:
    """A [0, 1] image as an 8-bit grey PNG, or an RGB one for a colour image ``(C, H, W)``."""
    from skimage import io

    io.imsave(path, np.round(np.clip(_displayable(image), 0, 1) * 255).astype(np.uint8), check_contrast=False)


def _displayable(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` as it is, a colour image ``(C, H, W)`` channels-last as image files and matplotlib hold it."""
    return np.moveaxis(image, 0, -1) if image.ndim == 3 else image


def write_figure(path: Path, observations: np.ndarray, estimates: np.ndarray, task: Task, title: str,
                 estimate_label: str = "estimate") -> None:
    """Observations ``(N, K, h, w)`` beside ``estimates (N, S, H, W)``, one row per mixture (the first few)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = min(len(observations), FIGURE_ROWS)
    k, s = observations.shape[1], estimates.shape[1]
    top = max(float(np.sum(row)) for row in task.weights)  # the brightest a noiseless observation can be
    fig, axes = plt.subplots(rows, k + s, figsize=(1.9 * (k + s), 2.0 * rows + 0.4), squeeze=False)
    for i in range(rows):
        for j in range(k):
            obs = observations[i, j]
            if obs.ndim == 3:  # colour: scaled by the brightest noiseless value (an RGB image takes no vmax)
                axes[i, j].imshow(_displayable(np.clip(obs / top, 0, 1)))
            else:
                axes[i, j].imshow(obs, cmap="gray", vmin=0, vmax=top)
            axes[i, j].set_title(f"observation {j + 1}" if k > 1 else "observation", fontsize=9)
        for j in range(s):
            axes[i, k + j].imshow(_displayable(np.clip(estimates[i, j], 0, 1)), cmap="gray", vmin=0, vmax=1)
            axes[i, k + j].set_title(f"{estimate_label} {j + 1}", fontsize=9)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_separation(out: Path, stem: str, observations: np.ndarray, estimates: np.ndarray, task: Task,
                     title: str) -> list[Path]:
    """One PNG per estimated source, the estimates as .npy (exact float32), and a side-by-side figure."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for n, mixture in enumerate(estimates):
        for s, source in enumerate(mixture):
            path = out / (f"{stem}-source{s + 1}.png" if len(estimates) == 1 else f"{stem}-{n}-source{s + 1}.png")
            write_png(path, source)
            written.append(path)
    array = out / f"{stem}-sources.npy"
    np.save(array, estimates[0] if len(estimates) == 1 else estimates)
    figure = out / f"{stem}-figure.png"
    write_figure(figure, observations, estimates, task, title)
    return [*written, array, figure]
