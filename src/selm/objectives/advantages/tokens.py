r"""Per-token pieces of the estimators: rewards with the KL in them, returns, GAE, whitening.

Every [B, T] tensor has each response as a prefix of its row (right padding); ``mask`` is the
response mask in the values' dtype. Padding positions of the results are 0.
"""

from __future__ import annotations

import torch

from selm.objectives.advantages.base import AdvantageInputs

# Added to the variance before the reciprocal square root, as TRL's PPO and verl's ``masked_whiten``.
WHITEN_EPS = 1e-8


def broadcast(sequence_values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A value per response repeated over its tokens: [B], [B, T] -> [B, T] (0 on padding)."""
    return sequence_values[:, None] * mask


def sequence_rewards(inputs: AdvantageInputs, kl_coef: float) -> torch.Tensor:
    r"""R'_i = R_i − β·Σ_t m_t·k1_t: [B] (RLOO's and TRL's KL in the sequence reward); R when β = 0."""
    if kl_coef == 0:
        return inputs.rewards
    return inputs.rewards - kl_coef * (inputs.kl * inputs.mask).sum(-1)


def token_rewards(inputs: AdvantageInputs, outcome: torch.Tensor, kl_coef: float) -> torch.Tensor:
    r"""r_t = −β·k1_t + [t = last response token]·R: [B, T].

    Args:
        inputs: the mask, and ``kl`` when β > 0.
        outcome: [B] the scalar placed on each response's last token (the reward, or the reward
            minus its group's mean). An empty response has no token to carry it.
        kl_coef: β ≥ 0.
    """
    mask = inputs.mask
    rewards = torch.zeros_like(mask) if kl_coef == 0 else -kl_coef * inputs.kl * mask
    lengths = inputs.response_mask.sum(-1)
    rows = torch.nonzero(lengths > 0).squeeze(-1)
    rewards[rows, lengths[rows] - 1] += outcome[rows]
    return rewards


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    r"""G_t = Σ_{s ≥ t} γ^{s−t}·r_s over each response's tokens: [B, T], [B, T] -> [B, T]."""
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = (rewards[:, t] + gamma * running) * mask[:, t]
        returns[:, t] = running
    return returns


def generalized_advantages(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
                           gamma: float, lam: float) -> torch.Tensor:
    r"""GAE (Schulman et al. 2016, https://arxiv.org/abs/1506.02438): [B, T] each -> [B, T].

    .. math::

        \delta_t = r_t + \gamma V_{t+1} - V_t \qquad A_t = \delta_t + \gamma\lambda A_{t+1}

    with V_t the value of the state before token t, and V and A past a response's last token
    equal to 0 (the episode ends there). With γ = λ = 1 and V = 0, A_t is the reward-to-go.
    """
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = (delta + gamma * lam * next_advantage) * mask[:, t]
        next_value = values[:, t] * mask[:, t]
        advantages[:, t] = next_advantage
    return advantages


def masked_whiten(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    r"""(x − μ)/sqrt(σ² + 1e-8) over the masked entries of the whole batch: [B, T] -> [B, T], 0 on padding.

    μ and σ² are the mean and the Bessel-corrected variance (÷ (N − 1)) of the N response tokens,
    as TRL's PPO and verl (``masked_whiten``) compute them.
    """
    count = mask.sum()
    mean = (values * mask).sum() / count.clamp(min=1.0)
    variance = ((values - mean).square() * mask).sum() / (count - 1).clamp(min=1.0)
    return (values - mean) * torch.rsqrt(variance + WHITEN_EPS) * mask
