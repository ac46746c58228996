"""Gradients: hand-derived values for the terms that define each method, and finite differences
for every objective."""

from __future__ import annotations

import pytest
import torch

from selm.objectives import PreferenceBatch, available_objectives, get_objective

B = 7


def grads(name: str, batch: PreferenceBatch, **hyperparameters: float) -> PreferenceBatch:
    """Gradients of the batch-mean loss with respect to every field of ``batch`` (leaves)."""
    loss = get_objective(name, **hyperparameters)(batch).losses.mean()
    loss.backward()
    return batch


def h(b: PreferenceBatch) -> torch.Tensor:
    return ((b.policy_chosen_logps - b.reference_chosen_logps)
            - (b.policy_rejected_logps - b.reference_rejected_logps)).detach()


@pytest.mark.parametrize("seed", (0, 1))
def test_dpo_gradient_is_minus_beta_sigmoid_of_minus_beta_h(seed, make_batch):
    beta = 0.2
    b = grads("dpo", make_batch(seed, requires_grad=True), beta=beta)
    expected = -beta * torch.sigmoid(-beta * h(b)) / B
    torch.testing.assert_close(b.policy_chosen_logps.grad, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(b.policy_rejected_logps.grad, -expected, rtol=1e-12, atol=1e-14)


def test_cdpo_gradient_mixes_both_labels(make_batch):
    # d/dz [−(1−ε)logσ(z) − ε·logσ(−z)] = −(1−ε)σ(−z) + ε·σ(z)
    beta, eps = 0.2, 0.1
    b = grads("dpo", make_batch(3, requires_grad=True), beta=beta, label_smoothing=eps)
    z = beta * h(b)
    expected = beta * (-(1 - eps) * torch.sigmoid(-z) + eps * torch.sigmoid(z)) / B
    torch.testing.assert_close(b.policy_chosen_logps.grad, expected, rtol=1e-12, atol=1e-14)


def test_selm_optimism_gradient_is_alpha_beta_over_b(make_batch):
    beta, alpha = 0.01, 0.001
    b = grads("selm", make_batch(0, requires_grad=True), beta=beta, alpha=alpha)
    torch.testing.assert_close(b.policy_explore_logps.grad, torch.full((B,), alpha * beta / B, dtype=torch.float64),
                               rtol=1e-12, atol=0)
    # The DPO part is SELM's only dependence on the pair: same gradient as plain DPO.
    expected = -beta * torch.sigmoid(-beta * h(b)) / B
    torch.testing.assert_close(b.policy_chosen_logps.grad, expected, rtol=1e-12, atol=1e-14)


def test_xpo_exploration_gradient_is_alpha_over_b(make_batch):
    alpha = 1e-5
    b = grads("xpo", make_batch(0, requires_grad=True), alpha=alpha)
    torch.testing.assert_close(b.policy_explore_logps.grad, torch.full((B,), alpha / B, dtype=torch.float64),
                               rtol=1e-12, atol=0)


def test_tdpo2_stops_the_gradient_of_the_chosen_kl(make_batch):
    beta, alpha = 0.1, 0.5
    b = make_batch(0, requires_grad=True)
    loss = get_objective("tdpo2", beta=beta, alpha=alpha)(b).losses.mean()
    chosen_kl_grad, rejected_kl_grad = torch.autograd.grad(
        loss, (b.chosen_seq_kl, b.rejected_seq_kl), materialize_grads=True)
    assert torch.equal(chosen_kl_grad, torch.zeros(B, dtype=torch.float64))
    z = beta * (h(b) - alpha * (b.rejected_seq_kl - b.chosen_seq_kl).detach())
    # ∂/∂KL_l of −logσ(β(h − α(KL_l − sg KL_w))) = α·β·σ(−z)
    torch.testing.assert_close(rejected_kl_grad, alpha * beta * torch.sigmoid(-z) / B,
                               rtol=1e-12, atol=1e-14)


def test_tdpo1_differentiates_through_the_chosen_kl(make_batch):
    beta = 0.1
    b = grads("tdpo1", make_batch(0, requires_grad=True), beta=beta)
    z = beta * (h(b) - (b.rejected_seq_kl - b.chosen_seq_kl).detach())
    torch.testing.assert_close(b.chosen_seq_kl.grad, -beta * torch.sigmoid(-z) / B, rtol=1e-12, atol=1e-14)


def test_simpo_gradient_is_length_normalized(make_batch):
    beta, gamma = 2.0, 0.5
    b = grads("simpo", make_batch(0, requires_grad=True), beta=beta, gamma=gamma)
    pw, pl = b.policy_chosen_logps.detach(), b.policy_rejected_logps.detach()
    nw, nl = b.chosen_lengths.detach(), b.rejected_lengths.detach()
    z = beta * (pw / nw - pl / nl) - gamma
    torch.testing.assert_close(b.policy_chosen_logps.grad, -beta * torch.sigmoid(-z) / (nw * B),
                               rtol=1e-12, atol=1e-14)


def test_sft_gradient_is_minus_one_over_length(make_batch):
    b = grads("sft", make_batch(0, requires_grad=True))
    torch.testing.assert_close(b.policy_chosen_logps.grad, -1 / (b.chosen_lengths.detach() * B),
                               rtol=1e-12, atol=0)
    assert b.policy_rejected_logps.grad is None


# Their gradients differ from the loss's numerical derivative by design (stop-gradients in
# surrogate terms, random label flips, a stateful posterior, discrete route codes); their own
# test files check the hand-derived gradients.
SURROGATE_GRADIENTS = {"sail", "hypo", "alol", "lcpo", "fpo"}


@pytest.mark.parametrize("name", sorted(set(available_objectives("PreferenceBatch")) - SURROGATE_GRADIENTS))
def test_gradients_match_finite_differences(name, make_batch):
    objective = get_objective(name)
    batch = make_batch(5)
    # The stop-gradient makes TDPO2's analytic gradient differ from the numerical one on purpose;
    # AIHF's pair kind is a discrete label.
    skip = {"chosen_seq_kl"} if name == "tdpo2" else {"is_demonstration"} if name == "aihf" else set()
    inputs = sorted(({"policy_chosen_logps", "policy_rejected_logps"} | objective.requires) - skip
                    - {"chosen_lengths", "rejected_lengths"})

    def loss(*tensors: torch.Tensor) -> torch.Tensor:
        fields = {k: getattr(batch, k) for k in objective.requires | {"policy_chosen_logps", "policy_rejected_logps"}}
        fields.update(zip(inputs, tensors, strict=True))
        return objective(PreferenceBatch.from_values(fields)).losses.mean()

    tensors = tuple(getattr(batch, k).clone().requires_grad_() for k in inputs)
    assert torch.autograd.gradcheck(loss, tensors, eps=1e-6, atol=1e-7, rtol=1e-5)
