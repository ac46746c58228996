"""SAIL (Ding et al. 2024): DPO over three routes of online data, with the authors' extra gradients."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selm.errors import ConfigError
from selm.objectives.base import (
    ObjectiveOutput,
    PreferenceBatch,
    register_objective,
    validate_nonnegative,
)
from selm.objectives.common import (
    REFERENCE_PAIR,
    ImplicitRewardObjective,
    logratios,
    reward_metrics,
)

# Route codes of PreferenceBatch.routes (the order of the authors' multinomial draw).
ROUTE_DP, ROUTE_PP, ROUTE_PR, ROUTE_OFFLINE = 0, 1, 2, 3
ROUTE_NAMES = {ROUTE_DP: "dp", ROUTE_PP: "pp", ROUTE_PR: "pr", ROUTE_OFFLINE: "offline"}
EXTRA_GRADIENTS = ("code", "score_function")
# −log π of a response is clamped here before its log is taken: a response of probability 1
# (summed log-prob 0) would otherwise give the code's hook an infinite gradient.
MIN_NLL = 1e-6


@register_objective("sail")
class SAIL(ImplicitRewardObjective):
    r"""Self-Improving Efficient Online Alignment, https://arxiv.org/abs/2406.15567, as in the
    authors' code (``cdpo/cdpo_trainer.py`` of their ``cdpo`` package, ``loss_type="generalized_sigmoid"``).

    Every pair carries a route (``routes``): 0 = DP (dataset responses), 1 = PP (two policy
    samples), 2 = PR (two policy samples, judge label), 3 = plain offline DPO. With h the DPO
    logit (see ``DPO``), in training (autograd on):

    1. DP and PP pairs resample their label from the policy's implicit Bradley-Terry model:
       h ← −h with probability 1 − σ(βh). (The code labels PP pairs when they are generated,
       one buffer before they are trained on; here the label is drawn when the pair is trained
       on, from the same current policy and reference.)
    2. With ℓ = log σ(βh) after the flip and m_route the route's 0/1 mask,

       .. math::

           L = -\ell - \tfrac12\rho\,(\ell\,m_{DP})^2 - \tfrac12\pi\,(\ell\,m_{PP})^2

       (∇½ℓ² = ℓ∇ℓ: the score-function term of a label sampled from the policy.)
    3. ``extra_gradient="code"``: the code's gradient hooks on the policy's summed log-probs,
       ∂L/∂log π_θ(y) −= c·sg(ℓ)/sg(log π_θ(y)) for y ∈ {y_w, y_l}, c = π·m_PP + γ·m_PR. This is
       the gradient of −c·sg(ℓ)·log(−log π_θ(y)); it *raises* the likelihood of both
       self-generated responses, by c·|ℓ|/|log π_θ(y)|. The hook adds its gradient after the
       batch mean, so the term here is multiplied by the batch size B: within one micro-batch the
       gradient equals the code's (with G accumulation steps the code's is G times larger).
       ``extra_gradient="score_function"`` is the paper's form instead: the gradient of sampling
       y ∼ π_θ, −c·sg(ℓ)·∇log π_θ(y), which *lowers* the likelihood of badly fit samples; it
       is a per-example term under the batch mean.
       Either term is added as c·sg(ℓ)·(g − sg(g)): it contributes the gradient only, so the
       logged loss is the code's.

    Outside training (no autograd) labels are not resampled. ρ = π = γ = 0 with DP routes is
    DPO on labels sampled from the policy; with only offline routes it is exactly DPO.

    Inputs: policy/reference chosen/rejected summed log-probs and routes, [B] each.
    Output losses: [B]. Own metrics: ``sail/flip_rate`` (share of pairs whose label was flipped),
    ``sail/route_<name>`` (share of pairs on each route).

    Args:
        beta: β > 0. Default 0.1.
        rho: ρ >= 0, coefficient of the DP ℓ² term. Default 0 (the code's; its DP sweep uses 0.2).
        pi: π >= 0, coefficient of the PP ℓ² term and hook. Default 0 (PP sweep: 0.2).
        gamma: γ >= 0, coefficient of the PR hook. Default 0 (PR sweep: 0.3).
        extra_gradient: ``"code"`` (default) or ``"score_function"`` (the paper's form).
    """

    requires = REFERENCE_PAIR | {"routes"}

    def __init__(self, beta: float = 0.1, rho: float = 0.0, pi: float = 0.0, gamma: float = 0.0,
                 extra_gradient: str = "code") -> None:
        super().__init__(beta)
        validate_nonnegative(self.name, rho=rho, pi=pi, gamma=gamma)
        if extra_gradient not in EXTRA_GRADIENTS:
            raise ConfigError(f"objective '{self.name}': extra_gradient must be one of "
                              f"{', '.join(EXTRA_GRADIENTS)}, got {extra_gradient!r}")
        self.rho, self.pi, self.gamma = float(rho), float(pi), float(gamma)
        self.extra_gradient = extra_gradient

    def flips(self, logits: torch.Tensor, routes: torch.Tensor) -> torch.Tensor:
        """[B] bool: which DP/PP labels are flipped, each with probability 1 − σ(βh); none outside training."""
        resampled = (routes == ROUTE_DP) | (routes == ROUTE_PP)
        if not (torch.is_grad_enabled() and logits.requires_grad):
            return torch.zeros_like(resampled)
        return resampled & torch.bernoulli(1 - torch.sigmoid(self.beta * logits.detach())).bool()

    def extra_term(self, ell: torch.Tensor, batch: PreferenceBatch) -> torch.Tensor:
        """[B] zero-valued term whose gradient is the sampled-response gradient (see the class doc)."""
        routes = batch.routes
        c = self.pi * (routes == ROUTE_PP).to(ell.dtype) + self.gamma * (routes == ROUTE_PR).to(ell.dtype)
        logps = batch.policy_chosen_logps, batch.policy_rejected_logps
        if self.extra_gradient == "code":
            g = sum(torch.log((-lp).clamp_min(MIN_NLL)) for lp in logps)
            return -batch.batch_size * c * ell.detach() * (g - g.detach())
        g = sum(logps)
        return -c * ell.detach() * (g - g.detach())

    def compute(self, batch: PreferenceBatch) -> ObjectiveOutput:
        chosen, rejected = logratios(batch)
        logits = chosen - rejected
        flipped = self.flips(logits, batch.routes)
        ell = F.logsigmoid(self.beta * torch.where(flipped, -logits, logits))
        dp = (batch.routes == ROUTE_DP).to(ell.dtype)
        pp = (batch.routes == ROUTE_PP).to(ell.dtype)
        losses = -ell - 0.5 * self.rho * (ell * dp) ** 2 - 0.5 * self.pi * (ell * pp) ** 2
        metrics = reward_metrics(batch, self.beta * chosen, self.beta * rejected)
        metrics.update({f"sail/route_{name}": (batch.routes == code).to(ell.dtype).mean()
                        for code, name in ROUTE_NAMES.items()})
        metrics["sail/flip_rate"] = flipped.to(ell.dtype).mean()
        return ObjectiveOutput(losses=losses + self.extra_term(ell, batch), metrics=metrics)
