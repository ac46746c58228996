"""A-LoL against plain float64 math: clipped importance ratio, positive advantages only."""

from __future__ import annotations

import math

import pytest
import torch

from selm.objectives import PreferenceBatch, get_objective

PW, PL = [-5.0, -8.0, -2.0, -6.0], [-7.0, -4.0, -9.0, -3.0]
RW, RL = [-5.5, -4.0, -2.1, -6.0], [-6.0, -9.0, -8.0, -3.2]
AW, AL = [0.4, 1.2, -0.3, 0.0], [-0.5, 0.7, 0.2, -1.0]


def batch(reference: bool = True) -> PreferenceBatch:
    f = {"policy_chosen_logps": PW, "policy_rejected_logps": PL, "chosen_advantages": AW, "rejected_advantages": AL}
    if reference:
        f |= {"reference_chosen_logps": RW, "reference_rejected_logps": RL}
    return PreferenceBatch(**{k: torch.tensor(v, dtype=torch.float64, requires_grad=k.startswith("policy"))
                              for k, v in f.items()})


@pytest.mark.parametrize("variant", ["alol", "ref_free"])
def test_loss_and_gradient(variant):
    eps = 0.5
    b = batch(reference=variant == "alol")
    out = get_objective("alol", epsilon=eps, variant=variant)(b)

    def ratio(p: float, r: float) -> float:
        return 1.0 if variant == "ref_free" else min(max(math.exp(p - r), 1 - eps), 1 + eps)

    terms = [[-p * ratio(p, r) * max(a, 0.0) for p, r, a in zip(ps, rs, adv)]
             for ps, rs, adv in ((PW, RW, AW), (PL, RL, AL))]
    expected = [0.5 * (x + y) for x, y in zip(*terms)]
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    out.losses.mean().backward()
    n = len(PW)
    # The ratio is a constant weight: dL/dlog π(y) = −½·clip(r)·A⁺ / B.
    torch.testing.assert_close(b.policy_chosen_logps.grad, torch.tensor(
        [-0.5 * ratio(p, r) * max(a, 0.0) / n for p, r, a in zip(PW, RW, AW)], dtype=torch.float64))
    torch.testing.assert_close(b.policy_rejected_logps.grad, torch.tensor(
        [-0.5 * ratio(p, r) * max(a, 0.0) / n for p, r, a in zip(PL, RL, AL)], dtype=torch.float64))
    assert out.metrics["alol/positive_fraction"].item() == 4 / 8


def test_ratio_is_clipped_both_ways():
    # exp(−8 + 4) ≈ 0.018 → 1 − ε; exp(−4 + 9) ≈ 148 → 1 + ε.
    out = get_objective("alol", epsilon=0.9)(batch())
    assert out.losses[1].item() == pytest.approx(0.5 * (8.0 * 0.1 * 1.2 + 4.0 * 1.9 * 0.7), rel=1e-12)


def test_ref_free_needs_no_reference():
    assert not get_objective("alol", variant="ref_free").needs_reference
    assert get_objective("alol").needs_reference


def test_seq_variant_weights_the_engine_sums_by_the_positive_advantages():
    # Σ_t clip(r_t)·log π(y_t) per response, as the engine returns it (here by hand).
    cw, cl = [-4.0, -9.5, -2.4, -5.0], [-6.3, -3.1, -10.0, -2.8]
    b = PreferenceBatch(**{k: torch.tensor(v, dtype=torch.float64, requires_grad=k.endswith("clipped_ratio_logps"))
                           for k, v in {"policy_chosen_logps": PW, "policy_rejected_logps": PL,
                                        "chosen_clipped_ratio_logps": cw, "rejected_clipped_ratio_logps": cl,
                                        "chosen_advantages": AW, "rejected_advantages": AL}.items()})
    objective = get_objective("alol", epsilon=0.3, variant="seq")
    out = objective(b)
    expected = [0.5 * (-x * max(a, 0.0) - y * max(c, 0.0)) for x, y, a, c in zip(cw, cl, AW, AL)]
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    out.losses.mean().backward()
    torch.testing.assert_close(b.chosen_clipped_ratio_logps.grad,
                               torch.tensor([-0.5 * max(a, 0.0) / 4 for a in AW], dtype=torch.float64))
    # The token-weighted mean ratio of y_w: Σ_t r_t log π_t / log π(y_w).
    assert out.metrics["alol/ratio_chosen"].item() == pytest.approx(sum(x / p for x, p in zip(cw, PW)) / 4, rel=1e-12)
    assert objective.token_ratio_clip == 0.3 and objective.needs_live_reference
    assert "reference_chosen_logps" not in objective.requires
    assert get_objective("alol").token_ratio_clip is None
