"""`ssim_batch` equals scikit-image's `structural_similarity(a, b, data_range=1.0)` called image by image."""

import gzip
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from sepbench.fast_ssim import ssim_batch, ssim_gaussian_batch

TOL = 1e-5


def _skimage(a: np.ndarray, b: np.ndarray, **kwargs) -> np.ndarray:
    """The reference: scikit-image on each float64 pair."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    kwargs.setdefault("data_range", 1.0)
    return np.array([structural_similarity(x, y, **kwargs) for x, y in zip(a, b, strict=True)])


def _assert_matches(a: np.ndarray, b: np.ndarray, **kwargs) -> None:
    got = ssim_batch(torch.from_numpy(a), torch.from_numpy(b), **kwargs)
    assert got.shape == (len(a),) and got.dtype == torch.float64
    err = np.abs(got.numpy() - _skimage(a, b, **kwargs))
    assert err.max() < TOL, f"max abs difference to scikit-image {err.max():.3g}"


def _uniform(rng: np.random.Generator, n: int, shape: tuple[int, int]) -> np.ndarray:
    return rng.random((n, *shape))


def _sparse(rng: np.random.Generator, n: int, shape: tuple[int, int]) -> np.ndarray:
    """MNIST-like: mostly exact zeros, with a few bright blobs (sums of Gaussians), clipped to [0, 1]."""
    h, w = shape
    rows, cols = np.mgrid[0:h, 0:w]
    img = np.zeros((n, h, w))
    for _ in range(4):
        cy = rng.uniform(0.2 * h, 0.8 * h, (n, 1, 1))
        cx = rng.uniform(0.2 * w, 0.8 * w, (n, 1, 1))
        sigma = rng.uniform(1.0, 3.0, (n, 1, 1))
        height = rng.uniform(0.5, 1.5, (n, 1, 1))
        img += height * np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * sigma**2))
    img[img < 0.1] = 0.0
    return np.clip(img, 0.0, 1.0)


def _noisy(rng: np.random.Generator, img: np.ndarray, sigma: float) -> np.ndarray:
    return np.clip(img + rng.normal(0.0, sigma, img.shape), 0.0, 1.0)


@pytest.mark.parametrize("shape", [(28, 28), (20, 33)])
@pytest.mark.parametrize("kind", ["uniform", "sparse"])
def test_random_images_match_skimage(kind, shape):
    rng = np.random.default_rng([0, *shape])
    make = _uniform if kind == "uniform" else _sparse
    a = make(rng, 48, shape)
    _assert_matches(a, make(rng, 48, shape))  # unrelated pairs
    _assert_matches(a, _noisy(rng, a, 0.05))  # pairs that are close
    _assert_matches(a, _noisy(rng, a, 0.3))


def test_identical_images_score_one():
    rng = np.random.default_rng(1)
    a = np.concatenate([_uniform(rng, 8, (28, 28)), _sparse(rng, 8, (28, 28))])
    got = ssim_batch(torch.from_numpy(a), torch.from_numpy(a.copy())).numpy()
    np.testing.assert_allclose(got, 1.0, rtol=0, atol=1e-12)
    _assert_matches(a, a.copy())


def test_constant_images_match_skimage():
    """Zero (co)variances everywhere: SSIM reduces to the C1/C2 terms."""
    rng = np.random.default_rng(2)
    levels = np.array([0.0, 0.0, 1.0, 0.5, 0.3, 0.0, 1.0, 0.25])
    other = np.array([0.0, 1.0, 1.0, 0.5, 0.31, 0.7, 0.0, 0.75])
    a = np.broadcast_to(levels[:, None, None], (8, 20, 33)).copy()
    b = np.broadcast_to(other[:, None, None], (8, 20, 33)).copy()
    _assert_matches(a, b)
    _assert_matches(a, _uniform(rng, 8, (20, 33)))  # constant against textured
    _assert_matches(_sparse(rng, 8, (20, 33)), b)


def test_window_sized_and_other_parameters_match_skimage():
    rng = np.random.default_rng(3)
    a = _uniform(rng, 6, (7, 7))  # a single complete window per image
    _assert_matches(a, _noisy(rng, a, 0.2))
    a = _sparse(rng, 6, (24, 19))
    for win_size in (3, 5, 11):
        _assert_matches(a, _noisy(rng, a, 0.1), win_size=win_size)
    a255 = np.round(255 * a)
    _assert_matches(a255, np.round(255 * _noisy(rng, a, 0.1)), data_range=255.0)


def test_chunking_and_input_dtype_do_not_change_the_result():
    rng = np.random.default_rng(4)
    a = torch.from_numpy(_sparse(rng, 37, (28, 28)))
    b = torch.from_numpy(_noisy(rng, a.numpy(), 0.1))
    ref = ssim_batch(a, b).numpy()
    for chunk in (1, 5, 36, 10_000):
        np.testing.assert_allclose(ssim_batch(a, b, chunk=chunk).numpy(), ref, rtol=0, atol=1e-14)
    a32, b32 = a.float(), b.float()  # float32 inputs are computed in float64 from the float32 values
    expected = ssim_batch(a32.double(), b32.double()).numpy()
    np.testing.assert_array_equal(ssim_batch(a32, b32).numpy(), expected)
    assert ssim_batch(a[:0], b[:0]).shape == (0,)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(5)
    a = torch.from_numpy(_sparse(rng, 300, (28, 28)))
    b = torch.from_numpy(_noisy(rng, a.numpy(), 0.1))
    got = ssim_batch(a.cuda(), b.cuda(), chunk=128)
    assert got.device.type == "cuda"
    np.testing.assert_allclose(got.cpu().numpy(), ssim_batch(a, b).numpy(), rtol=0, atol=1e-12)


def _mnist_pickle() -> Path | None:
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "mnist.pkl.gz"
    return path if path.is_file() else None


@pytest.fixture(scope="module")
def mnist_digits() -> np.ndarray:
    path = _mnist_pickle()
    if path is None:
        pytest.skip("the mnist package (with data/mnist.pkl.gz) is not installed")
    with gzip.open(path, "rb") as f:
        _train, _valid, (test_images, _labels) = pickle.load(f, encoding="latin1")
    return np.asarray(test_images[:600], dtype=np.float64).reshape(-1, 28, 28)


def test_real_digits_match_skimage(mnist_digits):
    rng = np.random.default_rng(6)
    digits = mnist_digits[:300]
    _assert_matches(digits, _noisy(rng, digits, 0.1))  # digit against a noisy copy of itself
    _assert_matches(digits, mnist_digits[300:600])  # two different digits
    blend = 0.5 * digits + 0.5 * mnist_digits[300:600]
    _assert_matches(digits, _noisy(rng, blend, 0.05))  # a digit against a noisy blend with another


@pytest.mark.parametrize(
    ("shape_a", "shape_b"),
    [
        ((28, 28), (28, 28)),  # 2-D, not a batch
        ((2, 1, 28, 28), (2, 1, 28, 28)),  # 4-D
        ((3, 28, 28), (2, 28, 28)),  # different batch sizes
        ((3, 28, 28), (3, 28, 27)),  # different image sizes
        ((3, 6, 28), (3, 6, 28)),  # smaller than the 7x7 window
        ((3, 28, 5), (3, 28, 5)),
    ],
)
def test_bad_shapes_raise_value_error(shape_a, shape_b):
    with pytest.raises(ValueError):
        ssim_batch(torch.zeros(shape_a), torch.zeros(shape_b))


@pytest.mark.parametrize("kwargs", [{"win_size": 6}, {"win_size": 1}, {"win_size": 29}, {"chunk": 0},
                                    {"data_range": 0.0}])
def test_bad_parameters_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        ssim_batch(torch.zeros(2, 28, 28), torch.zeros(2, 28, 28), **kwargs)


# --- the Gaussian window of Wang et al. (the other convention) ----------------------------------------------------

GAUSS = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}


@pytest.mark.parametrize("shape", [(12, 28, 28), (5, 11, 11), (4, 13, 40), (3, 32, 32)])
def test_the_gaussian_window_matches_skimage(shape):
    rng = np.random.default_rng(sum(shape))
    a = rng.random(shape)
    b = np.clip(a + 0.3 * rng.standard_normal(shape), 0, 1)
    got = ssim_gaussian_batch(torch.from_numpy(a), torch.from_numpy(b))
    assert np.abs(got.numpy() - _skimage(a, b, **GAUSS)).max() < 1e-12
    assert np.abs(got.numpy() - _skimage(a, b)).max() > 1e-3  # a convention of its own, not the box window's
    halves = torch.cat([ssim_gaussian_batch(torch.from_numpy(a[:2]), torch.from_numpy(b[:2]), chunk=1),
                        ssim_gaussian_batch(torch.from_numpy(a[2:]).float(), torch.from_numpy(b[2:]).float())])
    assert np.abs(halves.numpy() - got.numpy()).max() < 1e-6  # chunks and float32 inputs (rounded once)


def test_the_gaussian_window_on_real_digits_and_in_the_scores():
    from sepbench.datasets.mnist import load_mnist
    from sepbench.metrics import score

    clean = load_mnist().test[:64, 0].double().numpy()
    noisy = np.clip(clean + 0.1 * np.random.default_rng(0).standard_normal(clean.shape), 0, 1)
    got = ssim_gaussian_batch(torch.from_numpy(noisy), torch.from_numpy(clean)).numpy()
    assert np.abs(got - _skimage(noisy, clean, **GAUSS)).max() < 1e-12
    rows = score(torch.from_numpy(noisy).view(32, 2, 28, 28), torch.from_numpy(clean).view(32, 2, 28, 28))
    assert np.abs(rows["ssim_gauss"].to_numpy() - _skimage(noisy, clean, **GAUSS)).max() < 1e-12  # identity kept


def test_images_smaller_than_the_gaussian_window_score_nan():
    assert torch.isnan(ssim_gaussian_batch(torch.rand(3, 10, 28), torch.rand(3, 10, 28))).all()
