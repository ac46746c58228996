"""Forward-looking GFlowNet fine-tuning (Pan et al. 2023; Hu et al. 2024): modified SubTB over token trajectories."""

from __future__ import annotations

import torch

from selm.objectives.base import (
    Objective,
    ObjectiveOutput,
    register_objective,
    validate_positive,
)
from selm.objectives.rollout import RolloutBatch, RolloutMixin, masked_mean


def transition_residuals(batch: RolloutBatch, reward_temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """δ_t of every transition s_t → s_{t+1} by a non-final token: ([B, T−1] residuals, [B, T−1] validity).

    With log R(s⊤) = ``prefix_rewards``/τ, log π(⊤|s) = ``termination_token_logps`` and
    log π(y_{t+1}|s_t) = ``policy_token_logps`` (position t is the state before token t+1):

        δ_t = log R(s_t⊤) + log π(y_{t+1}|s_t) + log π(⊤|s_{t+1}) − log R(s_{t+1}⊤) − log π(⊤|s_t)

    A transition is valid when both of its states are response positions: the last position of a
    response is its EOS (ending, not a transition) or, for a cut response, a state whose
    termination log-prob the engine did not compute.
    """
    log_r = batch.prefix_rewards / reward_temperature
    term = batch.termination_token_logps
    delta = log_r[:, :-1] + batch.policy_token_logps[:, :-1] + term[:, 1:] - log_r[:, 1:] - term[:, :-1]
    valid = batch.response_mask[:, :-1] & batch.response_mask[:, 1:]
    return delta * valid, valid


@register_objective("fl_gfn")
class ForwardLookingSubTB(RolloutMixin, Objective):
    r"""GFlowNet fine-tuning of an LM with the modified sub-trajectory balance of Hu et al.,
    https://arxiv.org/abs/2310.04363, the forward-looking form (FL-DB,
    https://arxiv.org/abs/2302.01687) on the token tree.

    States are the prompt plus a response prefix, actions are tokens, and every state may
    terminate (⊤ = EOS) with reward R(s⊤) = exp(score(s)/τ), score the judge's value of the prefix
    as a complete response (``prefix_rewards``). The token graph is a tree, so log P_B ≡ 0, and no
    flow head is needed: the flow is read off the LM's own termination probability,
    log F(s) = log R(s⊤) − log π(⊤|s), which is FL-DB's reparametrisation F(s) = F̃(s)·R(s⊤) with
    log F̃(s) = −log π(⊤|s). With δ_t the residual of transition t (``transition_residuals``), a
    response's loss is the λ-weighted mean over its sub-trajectories i < j of the squared sums:

    .. math::

        L = \frac{\sum_{i<j} \lambda^{j-i-1}\big(\sum_{t=i}^{j-1}\delta_t\big)^2}{\sum_{i<j}\lambda^{j-i-1}}

    and the batch loss is the mean over responses. At L = 0 every prefix's flow is consistent, so
    sampling the policy to EOS draws a response x with probability R(x⊤)/F(s_0) ∝ R(x⊤). The loss is
    off-policy: any sampler's trajectories train it. Hu et al.'s code normalises by the λ-weighted
    count of sub-trajectories over the whole batch (longer responses weigh more); here each
    response's own weighted mean, so every response counts once (the zero of the loss is the same).

    Inputs: policy per-token and termination log-probs, prefix rewards, mask, [B, T].
    Output losses: [B]. Metrics: ``gfn/residual_abs`` (token mean of |δ_t|),
    ``gfn/log_flow_start`` (mean log F(s_0) = log Z estimate, nats), ``gfn/termination_logp``
    (token mean of log π(⊤|s)).

    Args:
        subtb_lambda: λ > 0, the weight decay over sub-trajectory length. Default 1.0 (Hu et al.).
        reward_temperature: τ > 0; log R = score/τ. Default 1.0 (Hu et al. anneal it to 0.8).
    """

    requires = frozenset({"termination_token_logps", "prefix_rewards"})

    def __init__(self, subtb_lambda: float = 1.0, reward_temperature: float = 1.0) -> None:
        validate_positive(self.name, subtb_lambda=subtb_lambda, reward_temperature=reward_temperature)
        self.subtb_lambda = float(subtb_lambda)
        self.reward_temperature = float(reward_temperature)

    def compute(self, batch: RolloutBatch) -> ObjectiveOutput:
        delta, valid = transition_residuals(batch, self.reward_temperature)
        # cumulative[:, k] = Σ_{t<k} δ_t; the sum over transitions i..j−1 is cumulative[j] − cumulative[i].
        cumulative = torch.cat([torch.zeros_like(delta[:, :1]), delta.cumsum(-1)], dim=-1)
        sums = cumulative[:, None, :] - cumulative[:, :, None]  # [B, i, j]
        steps = torch.arange(cumulative.shape[1], device=delta.device)
        span = (steps[None, :] - steps[:, None]).to(delta.dtype)  # j − i
        # Sub-trajectory (i, j) is kept when j > i and its last transition j−1 is valid (then all are).
        ends = torch.cat([torch.zeros_like(valid[:, :1]), valid], dim=-1)  # ends[:, j] = valid[:, j−1]
        weights = torch.where(span > 0, self.subtb_lambda ** (span - 1).clamp(min=0), 0.0)[None] * ends[:, None, :]
        losses = (weights * sums ** 2).sum((-1, -2)) / weights.sum((-1, -2)).clamp(min=torch.finfo(delta.dtype).tiny)
        mask = batch.mask
        log_flow = batch.prefix_rewards[:, 0] / self.reward_temperature - batch.termination_token_logps[:, 0]
        metrics = {"gfn/residual_abs": masked_mean(delta.detach().abs(), valid.to(delta.dtype)),
                   "gfn/log_flow_start": log_flow.detach().mean(),
                   "gfn/termination_logp": masked_mean(batch.termination_token_logps.detach(), mask)}
        return ObjectiveOutput(losses=losses, metrics=metrics)
