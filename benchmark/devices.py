"""Which device a cell runs on, and how its record names it (GPU model and id, or the CPU).

An executor may hand a cell GPU ids (Ray does: its logical ids, with ``CUDA_VISIBLE_DEVICES`` set to them). With
CUDA the method gets ``cuda:<local index>`` of the first one; without CUDA — a Ray started with ``--num-gpus`` on
a machine without a usable GPU, or torch's CPU build — the cell runs on the CPU and its record says so.
"""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Placement:
    """The device a cell runs on, the GPU ids it was given, and why it differs from what it asked for."""

    device: torch.device
    gpu_ids: tuple[str, ...] = ()
    note: str | None = None
    name: str = field(default="")

    def record(self) -> dict[str, Any]:
        """The cell record's fields: ``device`` (as torch names it), ``device_name``, ``gpu_ids``, ``device_note``;
        on a CPU also ``cpu_capability`` (the vector instructions torch's kernels use: ``AVX512``, ``AVX2``, …) and
        ``cpu_bf16`` (native bf16 instructions), which a CPU model's name alone does not tell apart."""
        found: dict[str, Any] = {"device": str(self.device), "device_name": self.name or device_name(self.device)}
        if self.device.type == "cpu":
            found.update(cpu_capabilities())
        if self.gpu_ids:
            found["gpu_ids"] = list(self.gpu_ids)
        if self.note:
            found["device_note"] = self.note
        return found


def local_cuda_index(gpu_id: str, visible: str | None) -> int:
    """torch's index of the GPU with id ``gpu_id``: its position in ``CUDA_VISIBLE_DEVICES`` (Ray sets it to the
    task's ids), or the id itself when that variable does not list it."""
    listed = [v.strip() for v in (visible or "").split(",") if v.strip()]
    if gpu_id in listed:
        return listed.index(gpu_id)
    return int(gpu_id)


def place(gpu: float, gpu_ids: Sequence[int | str] | None = None, *, cuda_count: int | None = None,
          visible: str | None = None) -> Placement:
    """Where a cell that asks for ``gpu`` GPUs runs, given the GPU ids its executor gave it (None: none given).

    ``cuda_count`` and ``visible`` default to what torch and ``CUDA_VISIBLE_DEVICES`` say (given for tests)."""
    count = (torch.cuda.device_count() if torch.cuda.is_available() else 0) if cuda_count is None else cuda_count
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    ids = tuple(str(i) for i in gpu_ids or ())
    if ids:
        if count == 0:
            return Placement(torch.device("cpu"), ids, f"given GPU {', '.join(ids)} but torch {torch.__version__} "
                                                       "sees no CUDA device here: ran on the CPU")
        index = local_cuda_index(ids[0], visible)
        if not 0 <= index < count:
            return Placement(torch.device("cpu"), ids, f"given GPU {ids[0]} but torch sees {count} CUDA device(s) "
                                                       f"(CUDA_VISIBLE_DEVICES={visible!r}): ran on the CPU")
        return Placement(torch.device("cuda", index), ids)
    if gpu > 0 and count > 0:
        return Placement(torch.device("cuda", 0))
    if gpu > 0:
        return Placement(torch.device("cpu"), note=f"asked for {gpu:g} GPU; no CUDA device here: ran on the CPU")
    return Placement(torch.device("cpu"))


def device_name(device: torch.device) -> str:
    """``NVIDIA H200`` for a CUDA device, else the CPU's model (``CPU``, when it cannot be read)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU: {cpu_model()}" if cpu_model() else "CPU"


@functools.cache
def cpu_capabilities() -> dict[str, Any]:
    """``cpu_capability``: the instruction set torch dispatches its CPU kernels to (``AVX512``, ``AVX2``, ``DEFAULT``,
    …; None where this torch cannot say); ``cpu_bf16``: whether the CPU has bf16 instructions oneDNN uses."""
    from sepbench.precision import cpu_has_bf16

    try:
        capability: str | None = str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        capability = None
    return {"cpu_capability": capability, "cpu_bf16": cpu_has_bf16()}


@functools.cache
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
