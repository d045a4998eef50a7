"""Micro-benchmark: the scorer's best assignment of outputs to sources at S = 8, exhaustive (8! = 40,320
assignments) against SciPy's Hungarian algorithm, on 1,000 mixtures' cost matrices; and both at S = 4, where
the exhaustive search is the default. The numbers go into :mod:`sepbench.pit`'s docstring and docs/metrics.md."""

from __future__ import annotations

import pytest
import torch

from sepbench import pit

N_MIXTURES = 1000


def _cost(n_sources: int) -> torch.Tensor:
    return torch.rand(N_MIXTURES, n_sources, n_sources, generator=torch.Generator().manual_seed(n_sources),
                      dtype=torch.float64)


@pytest.mark.benchmark(group="assignment, 1,000 mixtures, S = 8")
@pytest.mark.parametrize("search", ["exhaustive", "hungarian"])
def test_bench_assignment_s8(benchmark, search) -> None:
    cost = _cost(8)
    find = pit.exhaustive_permutation if search == "exhaustive" else pit.hungarian_permutation
    perm = benchmark.pedantic(find, args=(cost,), rounds=2 if search == "exhaustive" else 5, warmup_rounds=0)
    chosen = torch.gather(cost, 1, perm[:, None, :]).sum(-1).squeeze(1)
    # both find the optimum (the totals agree to rounding: ties between assignments may pick either)
    torch.testing.assert_close(chosen, torch.gather(cost, 1, pit.hungarian_permutation(cost)[:, None, :]).sum(-1)
                               .squeeze(1))


@pytest.mark.benchmark(group="assignment, 1,000 mixtures, S = 4")
@pytest.mark.parametrize("search", ["exhaustive", "hungarian"])
def test_bench_assignment_s4(benchmark, search) -> None:
    cost = _cost(4)
    find = pit.exhaustive_permutation if search == "exhaustive" else pit.hungarian_permutation
    perm = benchmark.pedantic(find, args=(cost,), rounds=5, warmup_rounds=1)
    assert torch.equal(perm, pit.exhaustive_permutation(cost))
