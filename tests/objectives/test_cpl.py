"""CPL against plain float64 math, with its hand-derived gradient."""

from __future__ import annotations

import math

import pytest
import torch

from selm.errors import ConfigError
from selm.objectives import PreferenceBatch, get_objective


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize(("alpha", "lam"), [(0.1, 0.5), (0.3, 1.0)])
def test_loss_and_gradient(alpha, lam):
    pw, pl = [-12.0, -3.0, -40.0, -7.0], [-10.0, -9.0, -35.0, -7.0]
    b = PreferenceBatch(policy_chosen_logps=torch.tensor(pw, dtype=torch.float64, requires_grad=True),
                        policy_rejected_logps=torch.tensor(pl, dtype=torch.float64, requires_grad=True))
    out = get_objective("cpl", alpha=alpha, contrastive_bias=lam)(b)
    z = [alpha * w - lam * alpha * l for w, l in zip(pw, pl)]
    # −log(e^{A+} / (e^{A+} + e^{λA−})) written out, not through σ.
    expected = [-(alpha * w) + math.log(math.exp(alpha * w) + math.exp(lam * alpha * l)) for w, l in zip(pw, pl)]
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    out.losses.mean().backward()
    n = len(pw)
    torch.testing.assert_close(b.policy_chosen_logps.grad,
                               torch.tensor([-alpha * sig(-x) / n for x in z], dtype=torch.float64))
    torch.testing.assert_close(b.policy_rejected_logps.grad,
                               torch.tensor([lam * alpha * sig(-x) / n for x in z], dtype=torch.float64))
    assert out.metrics["rewards/chosen"].item() == pytest.approx(alpha * sum(pw) / n)


def test_needs_no_reference():
    assert get_objective("cpl").requires == frozenset() and not get_objective("cpl").needs_reference


@pytest.mark.parametrize("lam", [0.0, 1.5, -0.5])
def test_contrastive_bias_range(lam):
    with pytest.raises(ConfigError, match="objective 'cpl': contrastive_bias must be"):
        get_objective("cpl", contrastive_bias=lam)
