"""LCPO against plain float64 math: Gibbs posterior, weighted loss, its gradient, the reliability update."""

from __future__ import annotations

import json
import math

import pytest
import torch

from selm.errors import ConfigError
from selm.objectives import build_objective, get_objective


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def rows(batch):
    pw, pl, rw, rl = (getattr(batch, k).tolist() for k in (
        "policy_chosen_logps", "policy_rejected_logps", "reference_chosen_logps", "reference_rejected_logps"))
    return [(a - c) - (b - d) for a, b, c, d in zip(pw, pl, rw, rl)]


@pytest.mark.parametrize("complement", [True, False])
def test_dpo_base_loss_gradient_and_update(complement, make_batch):
    beta, eta, m = 0.2, 0.8, 0.25
    objective = get_objective("lcpo", base={"name": "dpo", "beta": beta}, reliability=eta, momentum=m,
                              complement=complement)
    batch = make_batch(2, requires_grad=True)
    out = objective(batch)
    hs = rows(batch)
    # For DPO the Gibbs probability is σ(βh): e^{−ℓ(h)} = σ(βh), e^{−ℓ(−h)} = σ(−βh).
    p = [sig(beta * x) for x in hs]
    w = [eta * q / (eta * q + (1 - eta) * (1 - q)) for q in p]
    expected = [wi * -logsig(beta * x) + ((1 - wi) * -logsig(-beta * x) if complement else 0.0) for wi, x in zip(w, hs)]
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    out.losses.mean().backward()
    n = len(hs)
    # w is an E-step constant: dL/dh = −β w σ(−βh) + β (1 − w) σ(βh).
    grad = [(-beta * wi * sig(-beta * x) + (beta * (1 - wi) * sig(beta * x) if complement else 0.0)) / n
            for wi, x in zip(w, hs)]
    torch.testing.assert_close(batch.policy_chosen_logps.grad, torch.tensor(grad, dtype=torch.float64))
    assert out.metrics["lcpo/reliability"].item() == eta
    assert out.metrics["lcpo/weight"].item() == pytest.approx(sum(w) / n, rel=1e-12)
    assert objective.reliability == pytest.approx((1 - m) * eta + m * sum(w) / n, rel=1e-12)


def test_no_update_outside_training(make_batch):
    objective = get_objective("lcpo", reliability=0.7)
    with torch.no_grad():
        objective(make_batch(0, requires_grad=True))
    assert objective.reliability == 0.7


def test_generic_base_uses_the_flipped_pair(make_batch):
    # SimPO: ℓ(h) = −log σ(β(m_w − m_l) − γ), with m the per-token log-probs; flipping swaps w and l.
    beta, gamma, eta = 2.0, 0.5, 0.9
    objective = get_objective("lcpo", base={"name": "simpo", "beta": beta, "gamma": gamma}, reliability=eta,
                              momentum=0.0)
    batch = make_batch(1)
    out = objective(batch)
    mw = [a / n for a, n in zip(batch.policy_chosen_logps.tolist(), batch.chosen_lengths.tolist())]
    ml = [a / n for a, n in zip(batch.policy_rejected_logps.tolist(), batch.rejected_lengths.tolist())]
    expected = []
    for a, b in zip(mw, ml):
        loss, loss_flipped = -logsig(beta * (a - b) - gamma), -logsig(beta * (b - a) - gamma)
        p = math.exp(-loss) / (math.exp(-loss) + math.exp(-loss_flipped))
        w = eta * p / (eta * p + (1 - eta) * (1 - p))
        expected.append(w * loss + (1 - w) * loss_flipped)
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"reliability": 0.5}, "reliability must be in"),
    ({"momentum": 1.0}, "momentum must be in"),
    ({"base": "lcpo"}, "base cannot itself be lcpo"),
    ({"base": {"name": "dpoo"}}, "unknown objective 'dpoo'"),
])
def test_bad_hyperparameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        get_objective("lcpo", **kwargs)


def test_state_round_trips_through_weighted_sums(make_batch):
    spec = [{"name": "lcpo", "reliability": 0.8, "momentum": 0.5}, {"name": "sft", "weight": 0.1}]
    trained = build_objective(spec)
    trained(make_batch(0, requires_grad=True))
    state = trained.state_dict()
    assert set(state) == {"0.reliability"} and state["0.reliability"] != 0.8
    fresh = build_objective(spec)
    fresh.load_state_dict(json.loads(json.dumps(state)))  # checkpoints keep it as JSON
    assert fresh.parts[0][0].reliability == state["0.reliability"]


def test_parts_with_different_token_ratio_clips_are_refused():
    with pytest.raises(ConfigError, match="different per-token ratio clips"):
        build_objective([{"name": "alol", "variant": "seq", "epsilon": 0.2},
                         {"name": "lcpo", "base": {"name": "alol", "variant": "seq", "epsilon": 0.5}}])
