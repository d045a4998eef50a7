"""One pairwise-matrix PIT: the training loss and the scorer build the same matrix and search it the same way."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from sepbench import pit
from sepbench.methods.losses import pairwise_huber, separation_loss
from sepbench.metrics import pairwise_mse, score


def _pair(n: int = 12, s: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ref = torch.rand(n, s, 28, 28, generator=gen)
    est = ref[:, torch.randperm(s, generator=gen)] + 0.2 * torch.rand(n, s, 28, 28, generator=gen)
    return est.clamp(0, 1), ref


def test_pairwise_cost_is_the_loss_of_every_output_against_every_source():
    est, ref = _pair(n=4)
    cost = pit.pairwise_cost(est, ref, lambda a, b: (a - b).abs())
    for n, i, j in itertools.product(range(4), range(3), range(3)):
        assert torch.allclose(cost[n, i, j], (est[n, i] - ref[n, j]).abs().mean())
    # in blocks: exactly the same numbers
    assert torch.equal(pit.pairwise_cost(est, ref, pit.squared_error, block=3),
                       pit.pairwise_cost(est, ref, pit.squared_error))


def test_permutation_search_covers_every_assignment_identity_first():
    cost = torch.tensor([[[0.1, 0.5], [0.4, 0.3]]])
    perms, totals = pit.permutation_costs(cost)
    assert perms.tolist() == [[0, 1], [1, 0]]
    assert torch.allclose(totals, torch.tensor([[0.4, 0.9]]))
    assert pit.best_permutation(cost).tolist() == [[0, 1]]
    assert torch.allclose(pit.min_permutation_cost(cost), torch.tensor([0.4]))


def test_loss_and_scorer_use_the_one_implementation(monkeypatch):
    """Both go through ``pit.pairwise_cost`` and ``pit.permutation_costs``; their answers agree."""
    calls: list[str] = []
    for name in ("pairwise_cost", "permutation_costs"):
        original = getattr(pit, name)
        monkeypatch.setattr(pit, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    est, ref = _pair()
    rows = score(est, ref)
    scorer_calls = sorted(set(calls))
    calls.clear()
    pit_loss = separation_loss(est, ref, "pit")
    assert scorer_calls == sorted(set(calls)) == ["pairwise_cost", "permutation_costs"]

    # the scorer's chosen assignment has the lowest summed MSE, which is what PIT minimises over MSE
    best_mse = pit.min_permutation_cost(pairwise_mse(est, ref))
    assert torch.allclose(torch.tensor(rows.groupby("mixture")["mse"].sum().to_numpy()), best_mse)
    # and the PIT loss is the mean over mixtures of the best summed Huber, here found by brute force
    huber = torch.stack([torch.stack([F.huber_loss(est[:, list(p)][:, s], ref[:, s], reduction="none")
                                      .flatten(1).mean(-1) for s in range(3)]).sum(0)
                         for p in itertools.permutations(range(3))], dim=1)
    assert torch.allclose(pit_loss, huber.min(dim=1).values.mean())
    assert torch.equal(pairwise_huber(est, ref), pit.pairwise_cost(est, ref, lambda a, b: F.huber_loss(
        a, b, reduction="none")))
