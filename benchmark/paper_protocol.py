"""The paper's scoring protocol, as its public code computes it (``utils.fetch_mse_ssim`` and ``plot.ipynb``).

The public code runs the test set in its order in batches of 64 and scores one image per batch: output 2 of
the batch's first mixture (157 images for 10,000 mixtures), matched to whichever of the two true digits gives
it the higher SSIM, with an SSIM over an 11×11 Gaussian window (σ 1.5) and zero padding, and MSE over the
pixels. The model is never put in eval mode, so BatchNorm normalises by the 64 test images of each batch and
dropout stays on.

To show what each of those choices is worth, one cell computes five protocols, each changing one thing:

    A  paper        train mode, 157 images, output 2 with max-SSIM matching, Gaussian SSIM (the paper's)
    B  eval         A in eval mode (sepbench's separation: BatchNorm's running statistics, no dropout)
    C  all images   B on every test mixture instead of one per batch of 64
    D  both outputs C with both outputs, assigned by the lowest summed MSE (sepbench's matching)
    E  sepbench     D with scikit-image's SSIM (7×7 uniform window, no padding): sepbench's own protocol
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

PAPER_BATCH = 64  # the public code's test loader: batch 64, not shuffled
WINDOW, WINDOW_SIGMA = 11, 1.5
C1, C2 = 0.01 ** 2, 0.03 ** 2
STEPS = {"A": "paper", "B": "eval mode", "C": "all images", "D": "both outputs, MSE matching", "E": "sepbench"}


def _blur_matrix(size: int) -> torch.Tensor:
    """The 1-D Gaussian window as a ``size × size`` banded matrix: ``M @ X @ M.T`` is the 11×11 Gaussian blur of
    ``X`` with zero padding (the window is separable and symmetric), and a matrix product is fast on any CPU."""
    x = torch.arange(WINDOW, dtype=torch.float64) - WINDOW // 2
    g = torch.exp(-x ** 2 / (2 * WINDOW_SIGMA ** 2))
    g = g / g.sum()
    offset = torch.arange(size).view(1, -1) - torch.arange(size).view(-1, 1) + WINDOW // 2
    inside = (offset >= 0) & (offset < WINDOW)
    return torch.where(inside, g[offset.clamp(0, WINDOW - 1)], torch.zeros((), dtype=torch.float64))


def gaussian_ssim(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Per-image SSIM of ``(N, H, W)`` images as the public code's ``SSIM()``: 11×11 Gaussian window (σ 1.5),
    zero padding of 5, C1 = 0.01², C2 = 0.03², the mean of the SSIM map (in float64, ``chunk`` images at once)."""
    if len(a) > chunk:
        return torch.cat([gaussian_ssim(a[i:i + chunk], b[i:i + chunk], chunk) for i in range(0, len(a), chunk)])
    a, b = a.double(), b.double()
    rows, cols = _blur_matrix(a.shape[-2]), _blur_matrix(a.shape[-1])

    def blur(t: torch.Tensor) -> torch.Tensor:
        return rows @ t @ cols.T

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + C1) * (2 * cov + C2)) / ((mu_a ** 2 + mu_b ** 2 + C1) * (var_a + var_b + C2))
    return ssim_map.flatten(1).mean(1).float()


def scored_mixtures(n_mixtures: int) -> torch.Tensor:
    """The first mixture of each batch of 64: 157 of 10,000."""
    return torch.arange(0, n_mixtures, PAPER_BATCH)


def train_mode_outputs(method: Any, y: torch.Tensor, seed: int = 0) -> torch.Tensor | None:
    """The method's outputs with its network in train mode, batch by batch of 64 as the public code ran them;
    None for a method without a network. Runs on a copy, so the method's own network is untouched."""
    from sepbench.methods.torch_method import TorchMethod  # the cell's side: methods are loaded by now

    if not isinstance(method, TorchMethod):
        return None
    net = copy.deepcopy(method.net).train()
    device = next(net.parameters()).device
    torch.manual_seed(seed)
    outputs = []
    with torch.no_grad():
        for start in range(0, len(y), PAPER_BATCH):
            outputs.append(method.predict(net, y[start:start + PAPER_BATCH].to(device)).float().cpu())
    return torch.cat(outputs).clamp(0, 1)


def _one_output_max_ssim(est: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Output 2 of each mixture against both sources; the source with the higher SSIM: (mse, ssim) per mixture."""
    out = est[:, 1]
    ssims = torch.stack([gaussian_ssim(out, x[:, s]) for s in range(x.shape[1])], dim=1)
    mses = torch.stack([((out - x[:, s]) ** 2).flatten(1).mean(1) for s in range(x.shape[1])], dim=1)
    best = ssims.argmax(dim=1, keepdim=True)
    return mses.gather(1, best).squeeze(1), ssims.gather(1, best).squeeze(1)


def _stats(mse: torch.Tensor, ssim: torch.Tensor) -> dict[str, float]:
    return {"mse": float(mse.double().mean()), "ssim": float(ssim.double().mean()), "n": int(len(mse))}


def paper_protocol(method: Any, y: torch.Tensor, x: torch.Tensor, estimates: torch.Tensor,
                   rows: Any, seed: int = 0) -> dict[str, Any]:
    """Steps A–E (see the module) for one cell: ``estimates`` are sepbench's (eval-mode, clamped) outputs and
    ``rows`` its scored rows (per mixture and source: mse, ssim, perm). Two-source tasks only."""
    if x.shape[1] != 2:
        raise ValueError("the paper's protocol scores two-source mixtures")
    picked = scored_mixtures(len(y))
    trained = train_mode_outputs(method, y, seed)
    train_est = estimates if trained is None else trained
    steps: dict[str, dict[str, float]] = {}
    mse_a, ssim_a = _one_output_max_ssim(train_est[picked], x[picked])
    steps["A"] = _stats(mse_a, ssim_a)
    steps["B"] = _stats(*_one_output_max_ssim(estimates[picked], x[picked]))
    steps["C"] = _stats(*_one_output_max_ssim(estimates, x))
    perm = torch.tensor(rows["perm"].to_numpy(), dtype=torch.long).view(len(y), 2)  # per source: the output used
    chosen = estimates.gather(1, perm.view(-1, 2, 1, 1).expand_as(estimates))
    flat_est, flat_ref = chosen.flatten(0, 1), x.flatten(0, 1)
    steps["D"] = _stats(((flat_est - flat_ref) ** 2).flatten(1).mean(1), gaussian_ssim(flat_est, flat_ref))
    steps["E"] = {"mse": float(rows["mse"].mean()), "ssim": float(rows["ssim"].mean()), "n": int(len(rows))}
    for record in steps.values():
        if not all(math.isfinite(v) for v in record.values()):
            raise ValueError("the paper's protocol gave a non-finite score")
    return {"steps": steps, "train_mode": trained is not None,
            "images": {"mixture": picked.tolist(), "mse": mse_a.tolist(), "ssim": ssim_a.tolist()}}
