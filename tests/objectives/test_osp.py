"""OSP's soft-preference cross-entropy against plain float64 math."""

from __future__ import annotations

import math

import pytest
import torch

from selm.objectives import get_objective


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize("seed", range(3))
def test_loss_and_gradient(seed, make_batch):
    beta = 0.2
    batch = make_batch(seed, requires_grad=True)
    out = get_objective("osp", beta=beta)(batch)
    pw, pl, rw, rl, p = (getattr(batch, k).tolist() for k in (
        "policy_chosen_logps", "policy_rejected_logps", "reference_chosen_logps", "reference_rejected_logps",
        "label_probs"))
    hs = [(a - c) - (b - d) for a, b, c, d in zip(pw, pl, rw, rl)]
    expected = [-q * logsig(beta * x) - (1 - q) * logsig(-beta * x) for q, x in zip(p, hs)]
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    out.losses.mean().backward()
    # dL/dh = β(σ(βh) − p): the loss is minimal where the implicit preference equals the soft label.
    n = len(hs)
    torch.testing.assert_close(batch.policy_chosen_logps.grad,
                               torch.tensor([beta * (sig(beta * x) - q) / n for q, x in zip(p, hs)], dtype=torch.float64))
    assert out.metrics["osp/label_prob"].item() == pytest.approx(sum(p) / n)


def test_hard_label_is_dpo(make_batch):
    batch = make_batch(0)
    batch.label_probs = torch.ones_like(batch.label_probs)
    torch.testing.assert_close(get_objective("osp", beta=0.3)(batch).losses,
                               get_objective("dpo", beta=0.3)(batch).losses, rtol=1e-14, atol=1e-14)
    batch.label_probs = torch.full_like(batch.label_probs, 0.9)
    torch.testing.assert_close(get_objective("spce", beta=0.3)(batch).losses,
                               get_objective("dpo", beta=0.3, label_smoothing=0.1)(batch).losses, rtol=1e-14, atol=1e-14)
