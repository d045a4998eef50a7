"""``TorchMethod``: the base class of every learned method — a network per task, trained by the shared loop.

Precision (:mod:`sepbench.precision`): ``fit`` resolves the budget's 'auto' | 'fp32' | 'bf16' for the device and
``supports_bf16``, and records it in ``precision_``. The training steps and ``separate`` run under bf16 autocast
when it is 'bf16' (the weights stay fp32); validation runs in fp32. An estimate must depend on its own mixture
only, and bf16 kernels are chosen by batch size (LiGT's outputs moved by up to 2e-3 between a mixture alone and
inside a batch of 1,024): so ``separate`` under bf16 runs every chunk at exactly the chunk size, the last one
padded with zero observations, and every mixture goes through the same kernels whatever its batch-mates
(bit-identical on this project's CPU, checked by tests/methods/test_batch_independence.py). See
docs/performance.md for what bf16 separation gains and how little it changes the scores.

On a CPU the loop also trains with :class:`sepbench.methods.dropout.FastDropout` in place of ``nn.Dropout`` (a
cheaper random mask) and validates and separates in cache-sized chunks (``TorchMethod.cpu_chunk``); neither
changes what is computed, only how fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from sepbench.api import FitContext, Method, Param, Requirements, Resources, Task, TrainBudget
from sepbench.datasets.mixtures import Batch, TrainingData
from sepbench.methods.dropout import use_fast_dropout
from sepbench.methods.losses import LOSS_MODES, separation_loss
from sepbench.methods.training import default_optimiser, train_network
from sepbench.precision import autocast, resolve_precision


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
    #: network's activations in cache (docs/performance.md, "Rates behind the code"). On a GPU: ``GPU_CHUNK``.
    cpu_chunk: ClassVar[int] = 64
    GPU_CHUNK: ClassVar[int] = 1024

    def __init__(self, task: Task, **params: Any) -> None:
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
        pad = self.precision_ == "bf16" and not self.batch_dependent
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

    def save_state(self) -> dict[str, torch.Tensor]:
        """The network's ``state_dict`` (weights and buffers, fp32 as trained), contiguous on the CPU."""
        return {name: value.detach().cpu().contiguous() for name, value in self.net.state_dict().items()}

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """A fresh network on ``self.device`` as :meth:`make_network` builds it, with ``state`` loaded strictly
        (a missing, extra or mis-shaped tensor raises)."""
        self.net = self.make_network(self.device)
        self.net.load_state_dict(dict(state), strict=True)
        self.net.eval()
