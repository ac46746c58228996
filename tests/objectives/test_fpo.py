"""FPO in float64 against a plain per-pair computation (Python sets for the top-k union), its
reduction to length-normalised DPO at α = 0, D = 0 at θ = ref, and the stop-gradient on y_w."""

from __future__ import annotations

import math

import pytest
import torch

from selm.errors import ConfigError
from selm.objectives import PreferenceBatch, get_objective

B, F = 4, 12


def batch(seed: int, requires_grad: bool = False) -> PreferenceBatch:
    g = torch.Generator().manual_seed(seed)

    def tensor(*shape: int, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
        value = low + (high - low) * torch.rand(*shape, generator=g, dtype=torch.float64)
        return value.requires_grad_(requires_grad)

    # Pooled sparse activations: non-negative, many zeros, so ties at 0 are in play.
    def features() -> torch.Tensor:
        value = torch.relu(tensor(B, F, low=-1.0, high=2.0).detach())
        return value.requires_grad_(requires_grad)

    return PreferenceBatch.from_values({
        "policy_chosen_logps": tensor(B, low=-30, high=-5), "policy_rejected_logps": tensor(B, low=-30, high=-5),
        "reference_chosen_logps": tensor(B, low=-30, high=-5).detach(),
        "reference_rejected_logps": tensor(B, low=-30, high=-5).detach(),
        "chosen_lengths": torch.tensor([3.0, 7.0, 1.0, 12.0], dtype=torch.float64),
        "rejected_lengths": torch.tensor([5.0, 2.0, 9.0, 4.0], dtype=torch.float64),
        "policy_chosen_features": features(), "policy_rejected_features": features(),
        "reference_chosen_features": features().detach(), "reference_rejected_features": features().detach()})


def plain_distance(policy: list[float], reference: list[float], k: int) -> float:
    """Mean of (c_θ,i − c_ref,i)² over the union of each side's k largest (ties: lowest index, as topk)."""
    top = lambda values: set(sorted(range(len(values)), key=lambda i: (-values[i], i))[:k])  # noqa: E731
    union = top(policy) | top(reference)
    return sum((policy[i] - reference[i]) ** 2 for i in union) / len(union)


@pytest.mark.parametrize(("beta", "alpha", "k"), [(0.1, 0.5, 3), (2.0, 1.5, 1), (0.5, 0.0, 20)])
def test_loss_matches_a_plain_computation(beta, alpha, k):
    b = batch(0)
    out = get_objective("fpo", beta=beta, alpha=alpha, top_k=k)(b)
    expected = []
    for i in range(B):
        lw, ll = b.chosen_lengths[i].item(), b.rejected_lengths[i].item()
        margin = beta * (b.policy_chosen_logps[i].item() / lw - b.policy_rejected_logps[i].item() / ll)
        gamma_ref = beta * (b.reference_chosen_logps[i].item() / lw - b.reference_rejected_logps[i].item() / ll)
        d_w = plain_distance(b.policy_chosen_features[i].tolist(), b.reference_chosen_features[i].tolist(), k)
        d_l = plain_distance(b.policy_rejected_features[i].tolist(), b.reference_rejected_features[i].tolist(), k)
        u = margin - gamma_ref - alpha * (beta * d_l - beta * d_w)
        expected.append(math.log1p(math.exp(-u)))
    # A handful of float64 operations on O(10) numbers: rounding ~1e-15.
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-13)
    assert {"fpo/distance_chosen", "fpo/distance_rejected", "rewards/margins"} <= set(out.metrics)


def test_alpha_zero_is_length_normalised_dpo_and_equal_features_give_zero_distance():
    b = batch(1)
    fpo = get_objective("fpo", beta=0.3, alpha=0.0)(b).losses
    h = 0.3 * ((b.policy_chosen_logps - b.reference_chosen_logps) / b.chosen_lengths
               - (b.policy_rejected_logps - b.reference_rejected_logps) / b.rejected_lengths)
    torch.testing.assert_close(fpo, -torch.nn.functional.logsigmoid(h), rtol=1e-13, atol=0)
    same = PreferenceBatch.from_values({**{name: getattr(b, name) for name in get_objective("fpo").requires
                                           | {"policy_chosen_logps", "policy_rejected_logps"}},
                                        "policy_chosen_features": b.reference_chosen_features,
                                        "policy_rejected_features": b.reference_rejected_features})
    out = get_objective("fpo", beta=0.3, alpha=2.0)(same)
    assert out.metrics["fpo/distance_chosen"] == 0 and out.metrics["fpo/distance_rejected"] == 0
    torch.testing.assert_close(out.losses, fpo, rtol=0, atol=0)


def test_the_constraint_pushes_only_the_rejected_features():
    b = batch(2, requires_grad=True)
    get_objective("fpo", alpha=0.5, top_k=3)(b).losses.sum().backward()
    assert b.policy_chosen_features.grad is None or bool((b.policy_chosen_features.grad == 0).all())
    grad = b.policy_rejected_features.grad
    assert grad is not None and bool((grad != 0).any())
    # Only features in the union carry a gradient: at most 2k per pair.
    assert int((grad != 0).sum(-1).max()) <= 6


def test_bad_hyperparameters():
    with pytest.raises(ConfigError, match="objective 'fpo': top_k must be an integer >= 1, got 2.5"):
        get_objective("fpo", top_k=2.5)
    with pytest.raises(ConfigError, match="objective 'fpo': alpha must be >= 0"):
        get_objective("fpo", alpha=-1.0)
