"""VPO against plain float64 math: the value term's sign for the online and offline forms."""

from __future__ import annotations

import math

import pytest
import torch

from selm.errors import ConfigError
from selm.objectives import get_objective


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


@pytest.mark.parametrize(("mode", "sign"), [("online", 1.0), ("offline", -1.0)])
def test_loss_and_explore_gradient(mode, sign, make_batch):
    beta, alpha = 0.2, 0.05
    batch = make_batch(3, requires_grad=True)
    out = get_objective("vpo", beta=beta, alpha=alpha, mode=mode)(batch)
    pw, pl, rw, rl, pe = (getattr(batch, k).tolist() for k in (
        "policy_chosen_logps", "policy_rejected_logps", "reference_chosen_logps", "reference_rejected_logps",
        "policy_explore_logps"))
    expected = [-logsig(beta * ((a - c) - (b - d))) + sign * alpha * beta * e for a, b, c, d, e in zip(pw, pl, rw, rl, pe)]
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    out.losses.mean().backward()
    n = len(pw)
    # Online: a descent step lowers log π(y_cal) (optimism); offline: raises it (pessimism).
    torch.testing.assert_close(batch.policy_explore_logps.grad,
                               torch.full((n,), sign * alpha * beta / n, dtype=torch.float64))
    assert out.metrics["loss/value"].item() == pytest.approx(sum(sign * alpha * beta * e for e in pe) / n, rel=1e-12)


def test_online_vpo_is_xpo_with_alpha_times_beta(make_batch):
    batch = make_batch(1)
    vpo = get_objective("vpo", beta=0.1, alpha=0.3)(batch).losses
    xpo = get_objective("xpo", beta=0.1, alpha=0.03)(batch).losses
    torch.testing.assert_close(vpo, xpo, rtol=1e-14, atol=1e-14)


def test_bad_mode():
    with pytest.raises(ConfigError, match="objective 'vpo': mode must be online or offline"):
        get_objective("vpo", mode="optimistic")
