"""PIT and the scorer for S = 3, 4 (exhaustive) and beyond (Hungarian), against brute-force references."""

from __future__ import annotations

import itertools

import pytest
import torch

from sepbench import pit
from sepbench.methods.losses import separation_loss
from sepbench.metrics import score


def _scrambled(n: int, s: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, ...]]]:
    """Sources, and estimates = the sources in a random order per mixture plus noise; the orders used."""
    gen = torch.Generator().manual_seed(seed)
    ref = torch.rand(n, s, 12, 12, generator=gen)
    orders = [tuple(torch.randperm(s, generator=gen).tolist()) for _ in range(n)]
    est = torch.stack([ref[i, list(order)] for i, order in enumerate(orders)])
    est = (est + 0.05 * torch.randn(est.shape, generator=gen)).clamp(0, 1)
    return est, ref, orders


def _brute_force(est: torch.Tensor, ref: torch.Tensor, loss) -> tuple[list[tuple[int, ...]], list[float]]:
    """Per mixture: the assignment (output for each source) with the lowest summed loss, found by trying all."""
    best_perms, best_costs = [], []
    s = est.shape[1]
    for n in range(len(est)):
        costs = {perm: sum(float(loss(est[n, perm[j]], ref[n, j])) for j in range(s))
                 for perm in itertools.permutations(range(s))}
        perm = min(costs, key=costs.get)
        best_perms.append(perm)
        best_costs.append(costs[perm])
    return best_perms, best_costs


@pytest.mark.parametrize("s", [3, 4])
def test_scorer_and_pit_loss_match_brute_force(s):
    est, ref, orders = _scrambled(8, s, seed=s)
    perms, costs = _brute_force(est.double(), ref.double(), lambda a, b: (a - b).square().mean())
    rows = score(est, ref)
    assert len(rows) == 8 * s
    for n in range(8):
        got = rows[rows.mixture == n].sort_values("source")
        assert tuple(got.perm) == perms[n]
        # the generator put source j at output orders[n].index(j): the scorer undoes the scramble
        assert tuple(got.perm) == tuple(orders[n].index(j) for j in range(s))
        assert abs(got.mse.sum() - costs[n]) < 1e-9
    huber = torch.nn.functional.huber_loss
    _, huber_costs = _brute_force(est, ref, lambda a, b: huber(a, b, delta=1.0))
    expected = torch.tensor(huber_costs).mean()
    assert torch.allclose(separation_loss(est, ref, "pit"), expected, atol=1e-6)


@pytest.mark.parametrize("s", [5, 6])
def test_hungarian_beyond_the_bound_matches_the_exhaustive_search(s):
    assert s > pit.EXHAUSTIVE_MAX_SOURCES
    cost = torch.rand(200, s, s, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
    hungarian = pit.hungarian_permutation(cost)
    exhaustive = pit.exhaustive_permutation(cost)
    assert torch.equal(hungarian, exhaustive)  # continuous random costs: the optimum is unique
    assert torch.equal(pit.best_permutation(cost), hungarian)
    _, totals = pit.permutation_costs(cost)
    torch.testing.assert_close(pit.min_permutation_cost(cost), totals.min(dim=1).values)
    for row in hungarian:
        assert sorted(row.tolist()) == list(range(s))


def test_pit_loss_beyond_the_bound_is_differentiable_and_scorer_undoes_the_scramble():
    est, ref, orders = _scrambled(6, 5, seed=0)
    est.requires_grad_(True)
    loss = separation_loss(est, ref, "pit")
    loss.backward()
    assert est.grad is not None and torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0
    rows = score(est.detach(), ref)
    for n in range(6):
        got = rows[rows.mixture == n].sort_values("source")
        assert tuple(got.perm) == tuple(orders[n].index(j) for j in range(5))


def test_exhaustive_ties_still_resolve_to_the_identity_at_four_sources():
    cost = torch.zeros(3, 4, 4)
    assert pit.best_permutation(cost).tolist() == [[0, 1, 2, 3]] * 3
