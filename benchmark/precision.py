"""Training precision: the names a grid may ask for, bf16 detection, and resolving 'auto' for a device.

'fp32' trains in float32; 'bf16' under bf16 autocast (the weights stay fp32); 'auto' is 'bf16' where the device
runs bf16 natively (CUDA GPUs with bf16, CPUs with AVX512-BF16, AMX-BF16 or Arm BF16) and the method allows it
(``Method.supports_bf16``), else 'fp32'. The grid validates against :data:`PRECISIONS`; the planner asks
:func:`cpu_has_bf16` to estimate run times; the training loop resolves and applies the precision.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "fp32", "bf16")
# bf16 autocast where the CPU has no bf16 instructions: a training step's speed over fp32's, measured on a 2-core AMD
# EPYC without AVX-512 (2026-12-04, `python -m sepbench.perf.precision --threads 1`): fcsae 0.05×, ligt 0.09×,
# unet 0.09×, convsep 0.11×. The planner counts it, and a run that asks for bf16 on such a CPU says so.
EMULATED_BF16_SPEED = 0.1
_CPU_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 flags; "bf16" is the Arm feature (FEAT_BF16)


@functools.cache
def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16, AMX-BF16, Arm BF16) that oneDNN can use.

    Read from the CPU flags on Linux; elsewhere (no ``/proc/cpuinfo``) the answer is a safe False.
    """
    import torch

    if not torch.backends.mkldnn.is_available() or platform.system() != "Linux":
        return False
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return bool(_CPU_BF16_FLAGS & set(value.split()))
    except OSError:
        return False
    return False


def bf16_supported(device: torch.device | str) -> bool:
    """Whether bf16 autocast runs natively (not emulated) on ``device``."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return cpu_has_bf16()
    return False


def resolve_precision(requested: str, device: torch.device | str, allowed: bool = True) -> str:
    """'auto' → 'bf16' where ``device`` supports it natively and the method ``allowed`` it, else 'fp32'.

    An explicit 'bf16' is honoured on any device (emulated where it is not native), except for a method
    that does not allow it, which trains in 'fp32'.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r} (expected one of {', '.join(PRECISIONS)})")
    if not allowed:
        return "fp32"
    if requested == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return requested


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``precision`` is 'bf16', a no-op otherwise ('fp32'; resolve 'auto' first)."""
    if precision == "bf16":
        import torch

        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def no_tf32():
    """Float32 matrix products and convolutions on CUDA in full fp32 while the block runs, not TF32 (PyTorch lets
    cuDNN convolutions use TF32 by default): a cell's 'fp32' means fp32 on every device, so a track's entries
    trained on a GPU and on a CPU are held to one precision. bf16 autocast is unaffected; CPUs have no TF32."""
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved

