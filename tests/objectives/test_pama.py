"""PAMA: the closed-form Pareto step against a brute-force search of the simplex, and the loss
against float64 math done here."""

from __future__ import annotations

import itertools

import pytest
import torch

from selm.errors import ConfigError
from selm.objectives.base import get_objective
from selm.objectives.pama import PAMALoss, noon_unclipped_advantages, pama_weights
from selm.objectives.rollout import RolloutBatch

F64 = torch.float64
U64 = 2.0**-53


def simplex_grid(k: int, steps: int) -> torch.Tensor:
    """[G, k] every point of the simplex with coordinates in multiples of 1/steps."""
    points = [c + (steps - sum(c),) for c in itertools.product(range(steps + 1), repeat=k - 1) if sum(c) <= steps]
    return torch.tensor(points, dtype=F64) / steps


@pytest.mark.parametrize(("k", "steps"), [(2, 2000), (3, 300)])
def test_closed_form_is_the_minimum_over_the_simplex(k: int, steps: int) -> None:
    grid = simplex_grid(k, steps)
    generator = torch.Generator().manual_seed(k)
    # All positive, all negative and mixed signs, with ties and zeros among them.
    cases = [torch.randn(k, generator=generator, dtype=F64) for _ in range(20)]
    cases += [torch.rand(k, generator=generator, dtype=F64) + 0.1, -torch.rand(k, generator=generator, dtype=F64),
              torch.zeros(k, dtype=F64), torch.full((k,), 0.7, dtype=F64),
              torch.tensor([0.0] + [1.5] * (k - 1), dtype=F64)]
    for values in cases:
        weights, s_star = pama_weights(values)
        scale = values.abs().max().item()
        # The returned weights are on the simplex and reach s*.
        assert torch.all(weights >= 0) and abs(weights.sum().item() - 1) <= 4 * U64
        assert abs((weights * values).sum().item() - s_star.item()) <= 8 * U64 * scale
        assert values.min() <= s_star <= values.max()
        # Rounding a minimiser c* down to the grid in its first k−1 coordinates moves each by
        # < 1/steps and the last by < (k−1)/steps: ‖c_grid − c*‖₁ < 2(k−1)/steps, and as the moves
        # sum to 0, |(c_grid − c*)·a| ≤ ‖c_grid − c*‖₁·(max a − min a)/2 < δ = (k−1)(max a − min a)/steps.
        # So the grid's best |c·a| is in [|s*|, |s*| + δ] and its value within δ of s*.
        delta = (k - 1) * (values.max() - values.min()).item() / steps + 8 * U64 * scale
        combined = grid @ values
        best = combined[combined.abs().argmin()].item()
        assert abs(best - s_star.item()) <= delta
        assert torch.all(combined.abs() >= s_star.abs() - 8 * U64 * scale)  # no point of the simplex beats s*


def test_closed_form_by_hand_and_batched() -> None:
    cases = {  # values -> (weights, s*)
        (0.3, 0.5): ((1.0, 0.0), 0.3),
        (-0.2, -0.7): ((1.0, 0.0), -0.2),
        (-1.0, 3.0): ((0.75, 0.25), 0.0),
        (0.0, 2.0): ((1.0, 0.0), 0.0),
        (0.5, -0.5): ((0.5, 0.5), 0.0),
    }
    values = torch.tensor(list(cases), dtype=F64)
    weights, s_star = pama_weights(values.view(1, len(cases), 2))
    assert weights.shape == (1, len(cases), 2) and s_star.shape == (1, len(cases))
    assert weights[0].tolist() == [list(w) for w, _ in cases.values()]
    assert s_star[0].tolist() == [s for _, s in cases.values()]


MASK = torch.tensor([[True, True, True], [True, False, False]])
# [B=2, T=3, K=2]; the padding position holds values that must not count.
OBJECTIVE_ADVANTAGES = torch.tensor([[[0.8, 0.1], [-0.4, 0.5], [0.6, 0.3]],
                                     [[0.2, -0.9], [9.0, 9.0], [9.0, 9.0]]], dtype=F64)
SAMPLING = torch.tensor([[-1.0, -0.5, -2.0], [-0.3, 0.0, 0.0]], dtype=F64)


def make_batch(policy: torch.Tensor) -> RolloutBatch:
    return RolloutBatch(policy_token_logps=policy.clone().requires_grad_(), response_mask=MASK,
                        sampling_token_logps=SAMPLING, objective_advantages=OBJECTIVE_ADVANTAGES)


def test_batch_scope_loss_and_gradient_by_hand() -> None:
    # Token (0, 2) moves its ratio to e^0.3 > 1.2: clipped, so left out of I(A) and without gradient.
    policy = SAMPLING + torch.tensor([[0.0, 0.1, 0.3], [-0.05, 0.0, 0.0]], dtype=F64)
    batch = make_batch(policy)
    objective = get_objective("pama")
    assert isinstance(objective, PAMALoss) and objective.loss_type == "bnpo"
    assert objective.requires == frozenset({"sampling_token_logps", "objective_advantages"})
    out = objective.compute(batch)
    # I(A) over the 4 response tokens: objective 0: 0.8, 0, (clipped), 0.2 -> 1.0 / 4;
    # objective 1: 0.1, 0.5, (clipped), 0 -> 0.6 / 4. s* = min = 0.15.
    s_star = 0.15
    ratio = torch.exp(policy - SAMPLING)
    expected = -s_star * torch.minimum(ratio, ratio.clamp(0.8, 1.2))
    expected_losses = (expected * MASK).sum(-1)  # bnpo: token sums, divided by the step's tokens later
    torch.testing.assert_close(out.losses, expected_losses, rtol=8 * U64, atol=0)
    assert abs(out.metrics["pama/s_star"].item() - s_star) <= 4 * U64
    assert out.metrics["pama/objective_0"].item() == pytest.approx(0.25, abs=4 * U64)
    assert out.metrics["pama/weight_0"].item() == 0.0 and out.metrics["pama/weight_1"].item() == 1.0
    out.losses.sum().backward()
    # d/dlogπ of −s*·ρ is −s*·ρ where unclipped; the clipped token and padding get none.
    expected_grad = torch.where(ratio <= 1.2, -s_star * ratio, torch.zeros_like(ratio)) * MASK
    torch.testing.assert_close(batch.policy_token_logps.grad, expected_grad, rtol=8 * U64, atol=0)


def test_pama_is_grpo_with_the_closed_form_advantage() -> None:
    policy = SAMPLING + torch.tensor([[0.05, -0.3, 0.1], [0.2, 0.0, 0.0]], dtype=F64)
    pama = get_objective("pama", beta=0.1, loss_type="grpo")
    reference = torch.tensor([[-1.1, -0.4, -1.8], [-0.2, 0.0, 0.0]], dtype=F64)
    batch = make_batch(policy)
    batch.reference_token_logps = reference
    out = pama.compute(batch)
    s_star = out.metrics["pama/s_star"]
    grpo_batch = RolloutBatch(policy_token_logps=policy, response_mask=MASK, sampling_token_logps=SAMPLING,
                              reference_token_logps=reference, advantages=s_star * MASK.to(F64))
    grpo = get_objective("grpo", beta=0.1, epsilon_low=0.2, epsilon_high=0.2, loss_type="grpo").compute(grpo_batch)
    torch.testing.assert_close(out.losses, grpo.losses, rtol=0, atol=0)
    assert out.metrics["kl"] == grpo.metrics["kl"]


def test_token_scope_solves_the_closed_form_per_token() -> None:
    batch = make_batch(SAMPLING.clone())  # ρ = 1 everywhere: nothing clipped
    out = get_objective("pama", scope="token").compute(batch)
    # per token min_i max(A_i, 0): 0.1, 0 (−0.4 floored), 0.3 | 0 (−0.9 floored)
    s_star = torch.tensor([[0.1, 0.0, 0.3], [0.0, 0.0, 0.0]], dtype=F64)
    torch.testing.assert_close(out.losses, -(s_star * MASK).sum(-1), rtol=0, atol=0)
    assert out.metrics["pama/s_star"].item() == pytest.approx(0.4 / 4, abs=4 * U64)


def test_unclipped_advantages_floor_and_mask() -> None:
    log_ratio = torch.log(torch.tensor([[1.0, 1.25, 0.5]], dtype=F64))
    gains = noon_unclipped_advantages(torch.tensor([[[1.0, -1.0], [2.0, 3.0], [-0.5, 0.5]]], dtype=F64),
                                      log_ratio, epsilon_high=0.2)
    # ρ = 1.25 > 1.2 is clipped; ρ = 0.5 only binds for negative advantages, which Noon floors to 0.
    assert gains.tolist() == [[[1.0, 0.0], [0.0, 0.0], [0.0, 0.5]]]


def test_bad_scope_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^objective 'pama': scope must be one of batch, token, got 'sample'$"):
        get_objective("pama", scope="sample")
