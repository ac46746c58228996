"""HyPO against plain float64 math: DPO + λ·KL estimate, with the RLOO gradient on online samples."""

from __future__ import annotations

import math

import pytest
import torch

from selm.objectives import PreferenceBatch, get_objective


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


ON_P = [[-3.0, -5.0, -4.0], [-10.0, -2.0, -6.0]]
ON_R = [[-3.5, -4.0, -4.5], [-9.0, -2.5, -8.0]]


def batch() -> PreferenceBatch:
    return PreferenceBatch(
        policy_chosen_logps=torch.tensor([-6.0, -9.0], dtype=torch.float64, requires_grad=True),
        policy_rejected_logps=torch.tensor([-7.0, -8.0], dtype=torch.float64, requires_grad=True),
        reference_chosen_logps=torch.tensor([-6.5, -8.0], dtype=torch.float64),
        reference_rejected_logps=torch.tensor([-6.0, -9.5], dtype=torch.float64),
        policy_online_logps=torch.tensor(ON_P, dtype=torch.float64, requires_grad=True),
        reference_online_logps=torch.tensor(ON_R, dtype=torch.float64))


def test_value_is_dpo_plus_kl_estimate_and_gradient_is_rloo():
    beta, lam = 0.3, 0.2
    b = batch()
    out = get_objective("hypo", beta=beta, kl_coef=lam)(b)
    hs = [(-6.0 + 6.5) - (-7.0 + 6.0), (-9.0 + 8.0) - (-8.0 + 9.5)]
    kls = [sum(p - r for p, r in zip(ps, rs)) / 3 for ps, rs in zip(ON_P, ON_R)]
    expected = [-logsig(beta * x) + lam * kl for x, kl in zip(hs, kls)]
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert out.metrics["hypo/kl"].item() == pytest.approx(sum(kls) / 2, rel=1e-12)
    out.losses.mean().backward()
    # r_j = −(log π − log π_ref)(y_j); A_j = r_j − mean of the other two; ∂/∂log π(y_j) = −λ A_j / (k B).
    grad = []
    for ps, rs in zip(ON_P, ON_R):
        r = [-(p - q) for p, q in zip(ps, rs)]
        grad.append([-lam * (r[j] - (sum(r) - r[j]) / 2) / (3 * 2) for j in range(3)])
    torch.testing.assert_close(b.policy_online_logps.grad, torch.tensor(grad, dtype=torch.float64))
    # The sample with the largest log-ratio (most "over-fit" vs the reference) is pushed down.
    assert b.policy_online_logps.grad[1, 2] > 0


def test_leave_one_out_needs_two_samples():
    b = batch()
    b.policy_online_logps = b.policy_online_logps[:, :1]
    b.reference_online_logps = b.reference_online_logps[:, :1]
    with pytest.raises(ValueError, match="objective 'hypo': leave-one-out needs >= 2 online samples per pair, got 1"):
        get_objective("hypo")(b)
