"""The shared torch training loop and the base class of every learned method.

Adam (the paper's; a method may choose another optimiser and a learning-rate schedule through
``TorchMethod.configure_optimiser``, e.g. :func:`adamw_cosine`), Huber loss (δ = 1) per source, fixed-order or
permutation-invariant (PIT), batches from :class:`sepbench.datasets.mixtures.TrainingData`, validation each
epoch, the best weights kept; each epoch's record holds its seconds and the seconds elapsed so far.

Precision: the budget's ``precision`` is 'fp32', 'bf16' (bf16 autocast) or 'auto', which :func:`resolve_precision`
turns into 'bf16' where the device runs bf16 natively (CUDA GPUs with bf16, CPUs with AVX512-BF16, AMX-BF16 or
Arm BF16) and the method allows it (``TorchMethod.supports_bf16``), else 'fp32'. The training steps and
``separate`` run under bf16 autocast (the weights stay fp32); validation runs in fp32, so that the choice of the
best epoch does not depend on the precision. An estimate must depend on its own mixture only, and bf16 kernels
are chosen by batch size (LiGT's outputs moved by up to 2e-3 between a mixture alone and inside a batch of
1,024): so ``separate`` under bf16 runs every chunk at exactly the chunk size, the last one padded with zero
observations, and every mixture goes through the same kernels whatever its batch-mates (bit-identical on this
project's CPU, checked by tests/methods/test_batch_independence.py). bf16 separation is 1.8× faster for ConvSep
and LiGT on this CPU and changed test MSE by less than 1e-5.

On a CPU the loop also trains with :class:`FastDropout` in place of ``nn.Dropout`` (a cheaper random mask:
LiGT's training step 1.11× faster in bf16, 1.19× in fp32, on 2 threads) and validates and separates in
cache-sized chunks (``TorchMethod.cpu_chunk``); neither changes what is computed, only how fast.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import platform
import time
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sepbench.api import FitContext, Method, Param, Requirements, Resources, TrainBudget
from sepbench.datasets.mixtures import Batch, TrainingData

LOSS_MODES = ("fixed", "pit")
PRECISIONS = ("auto", "fp32", "bf16")
_CPU_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 flags; "bf16" is the Arm feature (FEAT_BF16)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def pairwise_huber(est: torch.Tensor, ref: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Huber loss (mean over pixels) of every output against every source: ``(N, S_out, S_ref)``."""
    n, s_out, s_ref = est.shape[0], est.shape[1], ref.shape[1]
    est_all = est.unsqueeze(2).expand(n, s_out, s_ref, *est.shape[2:]).float()
    ref_all = ref.unsqueeze(1).expand(n, s_out, s_ref, *ref.shape[2:]).float()
    return F.huber_loss(est_all, ref_all, reduction="none", delta=delta).flatten(3).mean(-1)


def separation_loss(est: torch.Tensor, ref: torch.Tensor, mode: str = "fixed") -> torch.Tensor:
    """Σ_s Huber(x̂_s, x_s), averaged over the batch; ``pit`` takes per mixture the best output order."""
    pair = pairwise_huber(est, ref)
    n_sources = pair.shape[-1]
    if mode == "fixed":
        return pair.diagonal(dim1=1, dim2=2).sum(-1).mean()
    if mode != "pit":
        raise ValueError(f"unknown loss mode {mode!r}")
    sources = torch.arange(n_sources, device=pair.device)
    per_perm = [pair[:, list(perm), sources].sum(-1) for perm in itertools.permutations(range(n_sources))]
    return torch.stack(per_perm, dim=1).min(dim=1).values.mean()


@functools.cache
def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16, AMX-BF16, Arm BF16) that oneDNN can use.

    Read from the CPU flags on Linux; elsewhere (no ``/proc/cpuinfo``) the answer is a safe False.
    """
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
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_optimiser(net: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam; the fused kernel where every parameter is a floating tensor on the CPU or a CUDA GPU.

    Same update rule as the default per-tensor loop (rounding aside); on this project's 2-core CPU the fused
    step made a small network's (fcsae's) training step about 1.5× faster.
    """
    params = list(net.parameters())
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None)


def fast_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout (zero with probability ``p``, scale the rest) with a cheaper mask than torch's on a CPU.

    torch draws one random number per element (about 7 ns each on this project's CPU; a quarter of a LiGT
    training step went into it). Here each 64-bit draw of torch's generator gives four 16-bit lanes, one per
    element, so ``p`` is rounded to a multiple of 1/65,536 and the survivors are scaled by the inverse of the
    rounded keep probability (unbiased). Forward and backward together take half the time of ``F.dropout``.
    Seeded by ``torch.manual_seed`` like any torch random op.
    """
    dropped = round(p * 65536)
    if dropped == 0:
        return x
    if dropped >= 65536:
        return x * 0
    n = x.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-2**63, None)
    keep = bits.view(torch.int16)[:n].view(x.shape) >= dropped - 32768
    return torch.where(keep, x * (65536 / (65536 - dropped)), 0)


class FastDropout(nn.Dropout):
    """:class:`torch.nn.Dropout` with :func:`fast_dropout`'s mask; identity in eval mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p) if self.training else x


def use_fast_dropout(net: nn.Module) -> int:
    """Replace every plain :class:`torch.nn.Dropout` inside ``net`` by a :class:`FastDropout`; returns how many.

    Dropout inside :class:`torch.nn.MultiheadAttention` (its ``dropout`` float) is torch's own and stays.
    """
    replaced = 0
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Dropout:
                setattr(module, name, FastDropout(child.p, child.inplace))
                replaced += 1
    return replaced


def evaluate(net: nn.Module, batch: Batch, loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
             chunk: int = 1024) -> float:
    """Mean loss of ``net`` over a fixed batch, in eval mode and without gradients."""
    net.eval()
    total = torch.zeros((), dtype=torch.float64, device=batch.y.device)
    count = 0
    with torch.no_grad():
        for start in range(0, len(batch.y), chunk):
            part = Batch(*(t[start:start + chunk] for t in batch))
            total += loss_fn(net, part).double() * len(part.y)  # summed on the device: one sync at the end
            count += len(part.y)
    return float(total) / max(count, 1)


#: builds the optimiser and an optional per-step learning-rate schedule: (net, budget, total steps) → both
OptimiserFactory = Callable[[nn.Module, TrainBudget, int],
                            tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]]


def default_optimiser(net: nn.Module, budget: TrainBudget, total_steps: int
                      ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """The paper's choice: Adam at the budget's constant learning rate, no schedule."""
    return make_optimiser(net, budget.lr), None


def adamw_cosine(net: nn.Module, budget: TrainBudget, total_steps: int, weight_decay: float = 0.01,
                 warmup: float = 0.05) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW (decoupled weight decay on weights of rank ≥ 2 only) and a per-step schedule: a linear warm-up
    over ``warmup`` of the steps, then a cosine decay from the budget's lr to zero at the last step."""
    params = [p for p in net.parameters() if p.requires_grad]
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    optimiser = torch.optim.AdamW([g for g in groups if g["params"]], lr=budget.lr, fused=fused or None)
    warm = max(1, round(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return optimiser, torch.optim.lr_scheduler.LambdaLR(optimiser, factor)


def train_network(net: nn.Module, data: TrainingData, ctx: FitContext,
                  loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
                  precision: str | None = None, eval_chunk: int = 1024,
                  optimiser_factory: OptimiserFactory = default_optimiser) -> list[dict[str, float]]:
    """Train ``net`` on ``data`` within ``ctx.budget``; keep the weights of the best validation epoch.

    ``precision`` ('fp32' or 'bf16') defaults to the budget's, with 'auto' resolved for ``ctx.device``;
    validation runs in chunks of ``eval_chunk`` mixtures; ``optimiser_factory`` builds the optimiser and an
    optional learning-rate schedule, stepped after every training step.
    """
    budget: TrainBudget = ctx.budget
    precision = precision or resolve_precision(budget.precision, ctx.device)
    steps_per_epoch = math.ceil(len(data) / budget.batch_size)
    optimiser, schedule = optimiser_factory(net, budget, steps_per_epoch * budget.epochs)
    history: list[dict[str, float]] = []
    best_loss, best_state = math.inf, None
    elapsed = 0.0
    for epoch in range(1, budget.epochs + 1):
        net.train()
        started = time.perf_counter()
        running = torch.zeros((), device=ctx.device)
        for step, batch in enumerate(data.epoch(budget.batch_size), start=1):
            optimiser.zero_grad(set_to_none=True)
            with autocast(ctx.device, precision):
                loss = loss_fn(net, batch)
            loss.backward()
            optimiser.step()
            if schedule is not None:
                schedule.step()
            running += loss.detach()
            if step % 50 == 0 or step == steps_per_epoch:
                mean = float(running) / step
                if not math.isfinite(mean):
                    raise TrainingDiverged(
                        f"training loss became {mean} in epoch {epoch} by step {step}: "
                        f"try a smaller lr than {budget.lr:g}"
                    )
                ctx.progress({"epoch": epoch, "epochs": budget.epochs, "step": step,
                              "steps": steps_per_epoch, "train_loss": mean})
        train_loss = float(running) / steps_per_epoch
        val_loss = evaluate(net, data.validation, loss_fn, eval_chunk)  # fp32 at every precision
        seconds = time.perf_counter() - started
        elapsed += seconds
        record = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "seconds": seconds,
                  "elapsed": elapsed}  # this epoch's seconds (training and validation), and all epochs' so far
        history.append(record)
        ctx.logger.info("epoch %d/%d train %.5f val %.5f (%.1fs)", epoch, budget.epochs, train_loss, val_loss,
                        record["seconds"])
        ctx.progress({**record, "epochs": budget.epochs, "step": steps_per_epoch, "steps": steps_per_epoch})
        if val_loss < best_loss:
            best_loss = val_loss
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return history


class TorchMethod(Method):
    """A learned method: a network built per task, trained by :func:`train_network`, run in eval mode."""

    requires: ClassVar[Requirements] = Requirements(needs_training=True)
    resources: ClassVar[Resources] = Resources(cpu=1, gpu=0.5)
    parameters: ClassVar[dict[str, Param]] = {
        "loss": Param("fixed", str, choices=LOSS_MODES, help="fixed-order targets or permutation-invariant"),
    }
    #: whether 'auto' (or 'bf16') precision may train and run this network under bf16 autocast
    supports_bf16: ClassVar[bool] = True
    #: keep 4-D weights channels-last (NHWC): faster oneDNN convolutions for conv-heavy networks
    channels_last: ClassVar[bool] = False
    #: on a CPU, train with :class:`FastDropout` in place of the network's ``nn.Dropout`` modules
    fast_dropout: ClassVar[bool] = True
    #: mixtures per forward pass when validating and separating on a CPU. Small chunks keep a convolutional
    #: network's activations in cache: on this project's 2-core CPU ConvSep separates 287 mixtures/s in
    #: chunks of 64 and 195 in chunks of 1,024, LiGT 762 and 453. On a GPU the chunk is ``GPU_CHUNK``.
    cpu_chunk: ClassVar[int] = 64
    GPU_CHUNK: ClassVar[int] = 1024

    def __init__(self, task: Any, **params: Any) -> None:
        super().__init__(task, **params)
        self.net: nn.Module = self.build_network()
        self.history_: list[dict[str, float]] = []
        self.precision_: str = "fp32"  # the resolved training precision of the last fit

    def build_network(self) -> nn.Module:
        """The network for ``self.task`` (observations in, sources out)."""
        raise NotImplementedError

    def training_loss(self, net: nn.Module, batch: Batch) -> torch.Tensor:
        """Loss of one batch; the default compares the network's outputs with the sources."""
        return separation_loss(net(batch.y), batch.x, self.params["loss"])

    def predict(self, net: nn.Module, y: torch.Tensor) -> torch.Tensor:
        """Estimates for observations ``y`` in eval mode (the default: the network's output)."""
        return net(y)

    def configure_optimiser(self, net: nn.Module, budget: TrainBudget, total_steps: int
                            ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
        """The optimiser and an optional per-step learning-rate schedule for ``total_steps`` training steps.
        The default is the paper's (Adam, constant lr); :func:`adamw_cosine` is the modern alternative."""
        return default_optimiser(net, budget, total_steps)

    def fit(self, data: TrainingData, ctx: FitContext) -> TorchMethod:
        self.device = ctx.device
        self.precision_ = resolve_precision(ctx.budget.precision, ctx.device, self.supports_bf16)
        if ctx.budget.precision != "fp32" and self.precision_ == "fp32":
            ctx.logger.info("precision %s resolved to fp32 (bf16 %s)", ctx.budget.precision,
                            "not native on " + ctx.device.type if self.supports_bf16 else "not supported by the method")
        torch.manual_seed(ctx.seed)
        self.net = self.make_network(ctx.device)
        self.history_ = train_network(self.net, data, ctx, self.training_loss, precision=self.precision_,
                                      eval_chunk=self.inference_chunk(ctx.device),
                                      optimiser_factory=self.configure_optimiser)
        return self

    def make_network(self, device: torch.device | str) -> nn.Module:
        """A fresh network on ``device`` as the loop trains it: channels-last where the method asks, and
        :class:`FastDropout` on a CPU unless ``fast_dropout`` is False."""
        device = torch.device(device)
        net = self.build_network().to(device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        if self.fast_dropout and device.type == "cpu":
            use_fast_dropout(net)
        return net

    def inference_chunk(self, device: torch.device | str) -> int:
        """Mixtures per forward pass outside training on ``device``.

        In fp32 the results do not depend on it (to float rounding); in bf16 the kernels do, which is why the
        chunk is fixed per device and ``separate`` pads the last one.
        """
        return self.cpu_chunk if torch.device(device).type == "cpu" else self.GPU_CHUNK

    def separate(self, y: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """Estimates in float32, computed at the training precision (see the module's docstring).

        ``y`` is run in chunks of ``chunk`` mixtures (default :meth:`inference_chunk` of the method's device);
        under bf16 a short last chunk is padded to ``chunk`` with zero observations (not for methods that
        declare ``batch_dependent``: padding would change their real outputs).
        """
        chunk = chunk or self.inference_chunk(self.device)
        pad = self.precision_ == "bf16" and not getattr(self, "batch_dependent", False)
        self.net.eval()
        outputs = []
        with torch.no_grad(), autocast(torch.device(self.device), self.precision_):
            for start in range(0, len(y), chunk):
                part = y[start:start + chunk].to(self.device)
                n = len(part)
                if pad and n < chunk:
                    part = torch.cat([part, part.new_zeros((chunk - n, *part.shape[1:]))])
                outputs.append(self.predict(self.net, part)[:n].float())
        return torch.cat(outputs).contiguous()

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())
