"""ConvSep (Model I) as the public code builds it: exact size, layers, the options
(shared shapes: test_learned_common.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sepbench import Task
from sepbench.methods.convsep import ConvSep

PAPER_COUNT = 2_846_224
SEPARATOR_COUNT = 1_006_081
WRAP = Task(((1.0, 1.0),), 2, 0.01, superpose="uint8-wrap")


def test_parameter_count_is_the_papers_exactly(single_task) -> None:
    method = ConvSep(single_task)
    assert method.n_parameters() == PAPER_COUNT
    for sep in method.net.separators:
        assert sum(p.numel() for p in sep.parameters()) == SEPARATOR_COUNT
    # the options add no parameters
    assert ConvSep(single_task, residual=True, prior=True).n_parameters() == PAPER_COUNT


def test_encoder_narrows_to_an_8x4x4_bottleneck_with_batchnorm(single_task) -> None:
    net = ConvSep(single_task).net.eval()
    with torch.no_grad():
        code = net.encoder(torch.rand(2, 1, 14, 14))
        assert code.shape == (2, 8, 4, 4)
        assert net.decoder(code).shape == (2, 1, 14, 14)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.encoder.modules()) == 7
    # each separator is strided down to 2×2 and back
    shapes = []
    hooks = [m.register_forward_hook(lambda m, a, out: shapes.append(tuple(out.shape[-2:])))
             for m in net.separators[0] if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    with torch.no_grad():
        net.split(torch.rand(1, 1, 28, 28))
    for h in hooks:
        h.remove()
    assert shapes == [(14, 14), (5, 5), (2, 2), (5, 5), (14, 14), (28, 28)]


@pytest.mark.parametrize(("task", "top"), [(WRAP, 1.0), (Task(((1.0, 1.0),), 2, 0.01), 2.0),
                                           (Task(((0.7, 0.3), (0.3, 0.7)), 2, 0.01), 1.0)])
def test_reconstruction_spans_the_range_of_z(task, top: float) -> None:
    net = ConvSep(task).net.eval()
    assert net.z_range == top
    with torch.no_grad():
        z_hat = net.reconstruct(torch.rand(3, task.n_observations, 14, 14))
        out = net(torch.rand(3, task.n_observations, 14, 14))
    assert z_hat.shape == (3, task.n_observations, 28, 28)
    assert 0 <= float(z_hat.min()) and float(z_hat.max()) <= top
    assert out.shape == (3, 2, 28, 28) and 0 <= float(out.min()) and float(out.max()) <= 1


def test_residual_and_prior_start_from_the_classical_estimates(single_task) -> None:
    net = ConvSep(single_task, residual=True, prior=True).net.eval()
    last = net.upsample[-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    y = torch.rand(2, 1, 14, 14) * 0.9
    with torch.no_grad():
        z_hat = net.reconstruct(y)
    expected = torch.nn.functional.interpolate(y, scale_factor=2, mode="bilinear").clamp(1e-3, 2 - 2e-3)
    torch.testing.assert_close(z_hat, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["convsep", "ligt", "ligt-batchseq", "convsep-res", "ligt-spatial"])
def test_networks_sized_for_14x14_observations_serve_those_only_and_the_plan_says_so(name) -> None:
    from sepbench.grid import parse_grid
    from sepbench.plan import plan_grid
    from sepbench.registry import get_method

    method = get_method(name)
    assert method.unsupported_reason(Task(((1.0, 1.0),), 2, 0.01)) is None
    full = Task(((1.0, 1.0),), 1, 0.0)
    assert "takes 14×14 observations" in method.unsupported_reason(full)
    assert "28×28" in method.unsupported_reason(full)
    # a grid with both: the full-resolution pair is skipped at planning, with the reason, before any cell runs
    grid = parse_grid({"name": "g", "scenarios": {"paper": {"weights": [[1, 1]], "downsample": 2},
                                                  "full": {"weights": [[1, 1]], "downsample": 1}},
                       "noise": [0.0], "seeds": [0], "train": {"mixtures": 64, "epochs": 1},
                       "test": {"mixtures": 8}, "methods": [name]})
    plan = plan_grid(grid)
    assert [c.scenario.name for c in plan.cells] == ["paper"]
    assert [(s.scenario, "14×14" in s.reason) for s in plan.skipped] == [("full", True)]
