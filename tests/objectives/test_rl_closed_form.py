r"""RL with the KL in the reward converges to the closed-form optimum π* ∝ π_ref·exp(r/β).

A one-prompt bandit with single-token answers: the policy is a logits vector θ over a vocabulary
of 4 tokens, π_ref is fixed and the reward r(y) is known. The objective
J(π) = E_π[r] − β·KL(π‖π_ref) is maximised by π*(y) = π_ref(y)·exp(r(y)/β) / Z.

Each step runs selm's estimator and loss on **every possible rollout, weighted by its probability**
under the sampling policy, instead of on sampled ones: the expected loss, hence the expected
gradient, exactly. RLOO's rollouts are all 4⁴ = 256 groups of k = 4 answers; PPO's the 4 answers,
each with its GAE advantage against a scalar value (the critic). Both expected policy gradients
equal ∇J (the leave-one-out baseline and V do not depend on the answer they are compared with),
so θ follows gradient ascent on J with no noise, and π* is its fixed point (there r(y) − β·log
π*(y)/π_ref(y) = β·log Z is the same for every answer: every advantage is 0).

Tolerance. Near π*, ∇J(θ) ≈ −β·F·(θ − θ*) with F = diag(π*) − π*π*ᵀ (the softmax Fisher), so a
step of learning rate 1/β shrinks the error by at least (1 − λ_min(F)) per step, λ_min the smallest
non-zero eigenvalue. The test computes that factor, checks that after its N steps the predicted
error is below 1e-9, and asserts max_y |π(y) − π*(y)| < 1e-6: three orders of margin for the
early, non-linear steps. With a single update per rollout ρ = 1 and the clip does not act; PPO
also runs 2 epochs per rollout, where it does (the fixed point is the same).
"""

from __future__ import annotations

import itertools

import torch

from selm.objectives import RolloutBatch, get_objective
from selm.objectives.advantages import AdvantageInputs, get_advantage_estimator

F64 = torch.float64
REWARDS = torch.tensor([1.0, 0.0, 0.5, -0.5], dtype=F64)
REFERENCE = torch.log_softmax(torch.tensor([0.3, 1.0, -0.4, 0.2], dtype=F64), -1)
BETA = 0.5
STEPS = 600
TOLERANCE = 1e-6


def optimum() -> torch.Tensor:
    return torch.softmax(REFERENCE + REWARDS / BETA, -1)


def predicted_error(steps: int) -> float:
    """(1 − λ_min(F(π*)))^steps times the initial logit error, the linear rate of lr 1/β."""
    star = optimum()
    fisher = torch.diag(star) - torch.outer(star, star)
    eigenvalues = torch.linalg.eigvalsh(fisher)
    smallest = eigenvalues[eigenvalues > 1e-12].min().item()
    start = (REFERENCE - torch.log(star))
    initial = (start - start.mean()).abs().max().item()
    return (1 - smallest) ** steps * initial


def assert_converged(theta: torch.Tensor) -> None:
    assert predicted_error(STEPS) < 1e-9
    error = (torch.softmax(theta, -1) - optimum()).abs().max().item()
    assert error < TOLERANCE, error
    # It moved: π_ref is far from π*.
    assert (torch.softmax(REFERENCE, -1) - optimum()).abs().max().item() > 0.1


def token_batch(answers: torch.Tensor, theta: torch.Tensor, sampling: torch.Tensor, advantages: torch.Tensor,
                **values: torch.Tensor) -> RolloutBatch:
    """One single-token response per answer: [B] token ids -> [B, 1] per-token fields."""
    return RolloutBatch(policy_token_logps=torch.log_softmax(theta, -1)[answers, None],
                        response_mask=torch.ones(len(answers), 1, dtype=torch.bool),
                        sampling_token_logps=sampling[answers, None], advantages=advantages, **values)


def test_rloo_converges_to_the_closed_form():
    k = 4
    groups = torch.tensor(list(itertools.product(range(4), repeat=k)))  # [256, k]: every group of k answers
    answers = groups.flatten()
    group_ids = torch.arange(len(groups)).repeat_interleave(k)
    estimator = get_advantage_estimator("rloo", kl_coef=BETA)
    objective = get_objective("rloo")
    theta = REFERENCE.clone().requires_grad_()
    for _ in range(STEPS):
        sampling = torch.log_softmax(theta.detach(), -1)
        inputs = AdvantageInputs(rewards=REWARDS[answers], group_ids=group_ids,
                                 response_mask=torch.ones(len(answers), 1, dtype=torch.bool),
                                 kl=(sampling - REFERENCE)[answers, None])
        advantages = estimator(inputs).advantages
        losses = objective(token_batch(answers, theta, sampling, advantages)).losses
        # Probability of each group under the sampling policy, and the mean over its k answers.
        weights = sampling.exp()[groups].prod(-1).repeat_interleave(k) / k
        (grad,) = torch.autograd.grad((weights * losses).sum(), theta)
        with torch.no_grad():
            theta -= grad / BETA
    assert_converged(theta.detach())


def test_ppo_with_a_value_baseline_converges_to_the_closed_form():
    answers = torch.arange(4)
    estimator = get_advantage_estimator("gae", kl_coef=BETA, whiten=False)
    objective = get_objective("ppo", vf_coef=0.5)
    theta = REFERENCE.clone().requires_grad_()
    value = torch.zeros((), dtype=F64, requires_grad=True)
    for _ in range(STEPS):
        sampling = torch.log_softmax(theta.detach(), -1)
        old_value = value.detach().expand(4, 1)
        rollout = estimator(AdvantageInputs(rewards=REWARDS, group_ids=answers,
                                            response_mask=torch.ones(4, 1, dtype=torch.bool),
                                            kl=(sampling - REFERENCE)[:, None], values=old_value))
        for _epoch in range(2):
            batch = token_batch(answers, theta, sampling, rollout.advantages, values=value.expand(4, 1),
                                old_values=old_value, returns=rollout.returns)
            loss = (sampling.exp() * objective(batch).losses).sum()
            theta_grad, value_grad = torch.autograd.grad(loss, (theta, value))
            with torch.no_grad():
                theta -= theta_grad / BETA
                value -= value_grad  # vf_coef·(V − E[returns]): halves the value's error per step
    assert_converged(theta.detach())
    # The critic learned E_π*[r − β·log π*/π_ref] = β·log Z.
    log_z = torch.logsumexp(REFERENCE + REWARDS / BETA, -1).item()
    assert abs(value.item() - BETA * log_z) < 1e-5
