"""Batched SSIM in torch, numerically equal to ``skimage.metrics.structural_similarity(a, b, data_range=R)``.

Scikit-image's defaults are reproduced for 2-D grayscale images: a ``win_size``×``win_size`` uniform (box)
window, no Gaussian weighting, sample covariances (normalised by ``NP - 1``, ``NP = win_size**2``),
``K1 = 0.01`` and ``K2 = 0.03``. Scikit-image filters the whole image (``scipy.ndimage.uniform_filter``,
edges extended by symmetric reflection) and then drops a strip of ``(win_size - 1) // 2`` pixels on every
side before averaging the SSIM map. Every pixel that survives that crop has its whole window inside the
image, so the border mode never reaches the average: the SSIM map over the "valid" windows is exactly the
cropped map, and that is what is computed here, in float64 throughout.

With box sums ``Sx, Sy`` (of x, y), ``Sq`` (of x² + y²) and ``Sxy`` (of x·y) over a window of ``N``
pixels, scikit-image's ``((2·ux·uy + C1)(2·vxy + C2)) / ((ux² + uy² + C1)(vx + vy + C2))``, with means
``u = S / N`` and sample (co)variances such as ``vxy = (N·Sxy - Sx·Sy) / (N·(N - 1))``, becomes, after
multiplying the two factors built from means by ``N²`` and the two built from (co)variances by ``N(N-1)``::

    SSIM = (2P + N²·C1) · (2·(N·Sxy - P) + N(N-1)·C2) / ((Q + N²·C1) · (N·Sq - Q + N(N-1)·C2))

with ``P = Sx·Sy`` and ``Q = Sx² + Sy²`` — the same quantity, with fewer operations and one window sum
fewer (``vx + vy`` only ever appears as a sum). The rounding differs from scikit-image's by ~1e-15.

Scikit-image itself computes in float32 when it is given float32 arrays; the reference matched here (to
~1e-14) is scikit-image on float64 arrays, which is what ``sepbench.metrics`` passes it. On MNIST-like
data scikit-image's own float32 results differ from its float64 ones by ~1e-7.
"""

from __future__ import annotations

import torch

K1 = 0.01
K2 = 0.03

# On CPU a chunk is processed in blocks of about this many pixels per image map, so that the working set
# (four float64 maps and their partial sums, a few MB) stays in cache (docs/performance.md, "Rates behind the
# code"). Images larger than this go one per block. On CUDA whole chunks are processed in one go.
_CPU_BLOCK_PIXELS = 1 << 16


def _window_sums(x: torch.Tensor, dim: int, win: int) -> torch.Tensor:
    """Sums over every run of ``win`` consecutive elements along ``dim``; that dim shrinks by ``win - 1``.

    Built by doubling (sums of 2, 4, 8... elements, then one sum per set bit of ``win``): for ``win=7``
    four additions of shifted slices instead of six, and no cumulative sum (no error growth with size).
    """
    out_len = x.shape[dim] - win + 1
    parts = []  # slices of power-of-two window sums whose lengths add up to win
    offset = 0
    run, run_len = x, 1
    bits = win
    while True:
        if bits & 1:
            parts.append(run.narrow(dim, offset, out_len))
            offset += run_len
        bits >>= 1
        if not bits:
            break
        n = run.shape[dim] - run_len
        run = run.narrow(dim, 0, n) + run.narrow(dim, run_len, n)
        run_len *= 2
    if len(parts) == 1:  # win is a power of two (only reachable through this helper, not ssim_batch)
        return parts[0].clone()
    total = parts[0] + parts[1]
    for part in parts[2:]:
        total += part
    return total


def _validate(a: torch.Tensor, b: torch.Tensor, data_range: float, win_size: int, chunk: int) -> None:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise ValueError(f"ssim_batch expects torch tensors, got {type(a).__name__} and {type(b).__name__}")
    if a.dim() != 3 or b.dim() != 3:
        raise ValueError(
            f"ssim_batch expects two (N, H, W) tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.shape != b.shape:
        raise ValueError(f"image batches differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.device != b.device:
        raise ValueError(f"inputs are on different devices: {a.device} vs {b.device}")
    if a.is_complex() or b.is_complex():
        raise ValueError("complex inputs are not supported")
    if isinstance(win_size, bool) or not isinstance(win_size, int) or win_size < 3 or win_size % 2 != 1:
        raise ValueError(f"win_size must be an odd integer >= 3, got {win_size!r}")
    height, width = a.shape[1:]
    if height < win_size or width < win_size:
        raise ValueError(
            f"images of {height}x{width} pixels are smaller than the {win_size}x{win_size} SSIM window"
        )
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")


def _ssim_block(x: torch.Tensor, y: torch.Tensor, data_range: float, win: int) -> torch.Tensor:
    """Mean SSIM of each pair of a block (m, H, W) × (m, H, W) of any real dtype → (m,) float64."""
    m, height, width = x.shape
    npix = win * win
    c1 = (K1 * data_range) ** 2 * npix * npix
    c2 = (K2 * data_range) ** 2 * npix * (npix - 1)

    maps = torch.empty((4, m, height, width), dtype=torch.float64, device=x.device)
    x64, y64, sq, xy = maps.unbind(0)
    x64.copy_(x)
    y64.copy_(y)
    torch.mul(x64, x64, out=sq)
    sq.addcmul_(y64, y64)
    torch.mul(x64, y64, out=xy)

    # window sums over the valid windows only: (4, m, H - win + 1, W - win + 1)
    sums = _window_sums(_window_sums(maps, 2, win), 3, win)
    s_x, s_y, s_q, s_xy = sums.unbind(0)
    p = s_x * s_y
    q = s_x * s_x
    q.addcmul_(s_y, s_y)
    num = s_xy.mul_(npix).sub_(p).mul_(2).add_(c2)  # 2(N·Sxy - P) + N(N-1)·C2
    num *= p.mul_(2).add_(c1)  # × (2P + N²·C1)
    den = s_q.mul_(npix).sub_(q).add_(c2)  # N·Sq - Q + N(N-1)·C2
    den *= q.add_(c1)  # × (Q + N²·C1)
    return num.div_(den).reshape(m, -1).mean(dim=1)


def ssim_batch(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 1.0, win_size: int = 7,
               chunk: int = 4096) -> torch.Tensor:
    """(N, H, W) × (N, H, W) → (N,) SSIM per image, as skimage defines it.

    Float64 accumulation where it matters (in fact float64 throughout).

    Equal (to ~1e-14) to ``structural_similarity(x, y, data_range=data_range, win_size=win_size)`` of
    scikit-image, with its other defaults (uniform window, sample covariance, K1=0.01, K2=0.03), for each
    pair of float64 images. Any real input dtype is accepted; everything is computed in float64 on the
    inputs' device and the result is float64 there. At most ``chunk`` images are converted and filtered
    at a time (peak extra memory about ``chunk·H·W·8 bytes × 10``); on CPU the chunk is further split into
    cache-sized blocks. Raises ValueError for non-3-D or mismatched shapes, inputs on different devices,
    images smaller than the window, an even or too small ``win_size``, or a non-positive ``data_range``.
    """
    _validate(a, b, data_range, win_size, chunk)
    n, height, width = a.shape
    step = chunk
    if a.device.type == "cpu":
        step = min(chunk, max(1, _CPU_BLOCK_PIXELS // (height * width)))
    out = torch.empty(n, dtype=torch.float64, device=a.device)
    with torch.no_grad():
        for start in range(0, n, step):
            stop = min(start + step, n)
            out[start:stop] = _ssim_block(a[start:stop], b[start:stop], float(data_range), win_size)
    return out


GAUSSIAN_SIGMA = 1.5  # Wang et al. (2004): an 11 × 11 circular-symmetric Gaussian window of σ = 1.5 px
GAUSSIAN_TRUNCATE = 3.5  # scikit-image's: the window's radius is int(3.5 · 1.5 + 0.5) = 5 px


def gaussian_window(sigma: float = GAUSSIAN_SIGMA, truncate: float = GAUSSIAN_TRUNCATE) -> torch.Tensor:
    """The normalised 1-D Gaussian taps scikit-image's ``gaussian_weights=True`` filters with (scipy's
    ``gaussian_filter`` kernel, radius ``int(truncate·sigma + 0.5)``), float64."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return taps / taps.sum()


def _weighted_window(x: torch.Tensor, dim: int, weights: list[float]) -> torch.Tensor:
    """Weighted sums over every run of ``len(weights)`` consecutive elements along ``dim`` (a "valid" 1-D
    correlation; that dim shrinks by ``len(weights) - 1``): shifted slices, scaled and added — on a CPU several
    times faster than ``conv2d`` in float64, with the same sums."""
    out_len = x.shape[dim] - len(weights) + 1
    total = x.narrow(dim, 0, out_len) * weights[0]
    for k, weight in enumerate(weights[1:], start=1):
        total.add_(x.narrow(dim, k, out_len), alpha=weight)
    return total


def ssim_gaussian_batch(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 1.0,
                        sigma: float = GAUSSIAN_SIGMA, chunk: int = 1024) -> torch.Tensor:
    """(N, H, W) × (N, H, W) → (N,) SSIM with the Gaussian window of Wang et al., as scikit-image computes
    ``structural_similarity(x, y, data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.

    Weighted means and (population) variances over an 11 × 11 Gaussian window; as with the box window, the
    mean is taken over the pixels whose whole window lies inside the image (scikit-image's crop), so the
    border mode never enters. Float64 throughout; images smaller than the window give NaN (scikit-image
    refuses them)."""
    _validate(a, b, data_range, 3, chunk)
    n, height, width = a.shape
    taps = gaussian_window(sigma)
    size = len(taps)
    out = torch.full((n,), float("nan"), dtype=torch.float64, device=a.device)
    if height < size or width < size:
        return out
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    weights = taps.tolist()
    step = chunk
    if a.device.type == "cpu":  # cache-sized blocks, as for the box window
        step = min(chunk, max(1, _CPU_BLOCK_PIXELS // (height * width)))
    with torch.no_grad():
        for start in range(0, n, step):
            x = a[start:start + step].to(torch.float64)
            y = b[start:start + step].to(torch.float64)
            m = len(x)
            maps = torch.stack([x, y, x * x, y * y, x * y])  # (5, m, H, W)
            smooth = _weighted_window(_weighted_window(maps, 2, weights), 3, weights)
            ux, uy, uxx, uyy, uxy = smooth.unbind(0)
            vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
            s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
            out[start:start + m] = s.reshape(m, -1).mean(dim=1)
    return out
