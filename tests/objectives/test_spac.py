"""SPAC against plain float64 math: the loss, its reduction to DPO, and the pessimism gradient's direction."""

from __future__ import annotations

import math

import pytest
import torch

from selm.errors import ConfigError
from selm.objectives import get_objective


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


FIELDS = ("policy_chosen_logps", "policy_rejected_logps", "reference_chosen_logps", "reference_rejected_logps",
          "policy_explore_logps", "reference_explore_logps")


def test_loss_matches_scalar_math(make_batch):
    beta, lam = 0.2, 0.7
    batch = make_batch(3)
    out = get_objective("spac", beta=beta, lam=lam)(batch)
    expected = []
    for pw, pl, rw, rl, pe, re in zip(*(getattr(batch, k).tolist() for k in FIELDS)):
        sw, sl, se = pw - rw, pl - rl, pe - re
        expected.append(-logsig(beta * (sw - sl)) - lam / 2 * (logsig(beta * (sw - se)) + logsig(beta * (sl - se))))
    # Each loss is a few log1p/exp of O(10) arguments: float64 rounding, ~1e-15 relative.
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_zero_lambda_with_round_start_reference_is_dpo(make_batch):
    # π_t = π_ref: the round-start policy is the reference, so SPAC's log-ratios are DPO's.
    batch = make_batch(5)
    spac = get_objective("spac", beta=0.3, lam=0.0)(batch)
    dpo = get_objective("dpo", beta=0.3)(batch)
    assert torch.equal(spac.losses, dpo.losses)
    for key, value in dpo.metrics.items():
        assert torch.equal(spac.metrics[key], value), key


def test_pessimism_lowers_the_own_sample_against_the_data(make_batch):
    batch = make_batch(1, requires_grad=True)
    pessimism = get_objective("spac", beta=0.1, lam=1.0).pessimism(
        batch.policy_chosen_logps - batch.reference_chosen_logps,
        batch.policy_rejected_logps - batch.reference_rejected_logps, batch)
    pessimism.sum().backward()
    # A descent step (−gradient) lowers log π(y′) and raises both data responses.
    assert bool((batch.policy_explore_logps.grad > 0).all())
    assert bool((batch.policy_chosen_logps.grad < 0).all()) and bool((batch.policy_rejected_logps.grad < 0).all())


def test_bad_lambda():
    with pytest.raises(ConfigError, match="objective 'spac': lam must be >= 0"):
        get_objective("spac", lam=-0.1)
