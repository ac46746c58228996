"""AIHF against plain float64 math: per-kind weights, the reduction to DPO, and the logged per-kind losses."""

from __future__ import annotations

import math

import pytest
import torch

from selm.errors import ConfigError
from selm.objectives import PreferenceBatch, get_objective


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def test_loss_matches_scalar_math(make_batch):
    beta, wp, wd = 0.2, 0.6, 1.7
    batch = make_batch(2)
    out = get_objective("aihf", beta=beta, preference_weight=wp, demonstration_weight=wd)(batch)
    pw, pl, rw, rl, demo = (getattr(batch, k).tolist() for k in (
        "policy_chosen_logps", "policy_rejected_logps", "reference_chosen_logps", "reference_rejected_logps",
        "is_demonstration"))
    expected = [-(wd if d else wp) * logsig(beta * ((a - c) - (b - e))) for a, b, c, e, d in zip(pw, pl, rw, rl, demo)]
    assert 0 < sum(demo) < len(demo), "the batch should hold both kinds"
    # A few log1p/exp of O(10) arguments per pair: float64 rounding, ~1e-15 relative.
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    demo_losses = [x for x, d in zip(expected, demo) if d]
    pref_losses = [x for x, d in zip(expected, demo) if not d]
    assert out.metrics["loss/demonstration"].item() == pytest.approx(sum(demo_losses) / len(demo_losses), rel=1e-12)
    assert out.metrics["loss/preference"].item() == pytest.approx(sum(pref_losses) / len(pref_losses), rel=1e-12)
    assert out.metrics["aihf/demonstration_share"].item() == pytest.approx(sum(demo) / len(demo), rel=1e-15)


def test_zero_demonstration_weight_is_dpo(make_batch):
    values = {k: getattr(make_batch(4), k) for k in (
        "policy_chosen_logps", "policy_rejected_logps", "reference_chosen_logps", "reference_rejected_logps")}
    preference_only = PreferenceBatch.from_values({**values, "is_demonstration": torch.zeros(7, dtype=torch.float64)})
    mixed = PreferenceBatch.from_values({**values, "is_demonstration": torch.ones(7, dtype=torch.float64)})
    dpo = get_objective("dpo", beta=0.1)(preference_only)
    aihf = get_objective("aihf", beta=0.1, demonstration_weight=0.0)
    assert torch.equal(aihf(preference_only).losses, dpo.losses)
    # w_d = 0: demonstration pairs contribute nothing.
    assert torch.equal(aihf(mixed).losses, torch.zeros(7, dtype=torch.float64))


def test_bad_weight():
    with pytest.raises(ConfigError, match="objective 'aihf': preference_weight must be >= 0"):
        get_objective("aihf", preference_weight=-1.0)
