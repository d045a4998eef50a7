"""What a cell guards against the method it runs: the method works on the cell's own copies of its inputs, and an
output with NaN or inf fails the cell instead of being scored.

The source images are loaded once per process and shared by every cell that process runs (the local executor,
a reused Ray worker). A method that writes into its training images or its test observations in place must
change neither another cell's data nor its own cell's scoring, so it is handed copies: on the CPU, the training
images go into a buffer allocated once per process and refilled for each cell (several times cheaper than a
fresh copy, which pays page faults: docs/performance.md); another device gets a copy anyway when they move there.
"""

from __future__ import annotations

import torch

_BUFFER: list[torch.Tensor] = []  # the CPU copy of the training images this process hands to methods (at most one)


def training_images(images: torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    """The first ``n`` of the shared ``images`` on ``device``, in memory of the cell's own (refilled per call)."""
    if device.type != "cpu":
        return images[:n].to(device)  # another device: a copy of its own
    n = min(n, len(images))
    buffer = _BUFFER[0] if _BUFFER else None
    if buffer is None or buffer.dtype != images.dtype or buffer.shape[1:] != images.shape[1:] or len(buffer) < n \
            or buffer.untyped_storage().nbytes() < buffer.numel() * buffer.element_size():  # a method shrank it
        _BUFFER[:] = [torch.empty((len(images), *images.shape[1:]), dtype=images.dtype)]
        buffer = _BUFFER[0]
    own = buffer[:n]
    own.copy_(images[:n])
    return own


def nonfinite_reason(estimates: torch.Tensor) -> str | None:
    """Why ``estimates`` (N, S, H, W) cannot be scored: how many NaN and inf values, in which sources (as the rows
    number them, from 0); None when every value is finite. Clamping would turn NaN into a score."""
    bad = ~torch.isfinite(estimates)
    if not bool(bad.any()):
        return None
    nan = int(torch.isnan(estimates).sum())
    inf = int(bad.sum()) - nan
    sources = [str(s) for s in bad.flatten(2).any(dim=2).any(dim=0).nonzero().flatten().tolist()]
    where = f"source {sources[0]}" if len(sources) == 1 else f"sources {', '.join(sources)}"
    return (f"separate() returned {nan:,} NaN and {inf:,} inf value(s) of {estimates.numel():,}, in {where} "
            f"(of {estimates.shape[1]})")
