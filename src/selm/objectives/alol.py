"""A-LoL (Baheti et al. 2024): advantage-weighted offline policy gradient with a clipped ratio."""

from __future__ import annotations

import torch

from selm.errors import ConfigError
from selm.objectives.base import (
    Objective,
    ObjectiveOutput,
    PreferenceBatch,
    register_objective,
    validate_range,
)
from selm.objectives.common import REFERENCE_PAIR, logp_metrics, logratios
from selm.objectives.fields import CLIPPED_RATIO_FIELDS

ADVANTAGES = frozenset({"chosen_advantages", "rejected_advantages"})
VARIANTS = ("alol", "seq", "ref_free")


@register_objective("alol")
class ALoL(Objective):
    r"""Advantage-Leftover-Lunch RL, https://arxiv.org/abs/2305.14718, as in the authors' code
    (``lolrl_qlora_llama_hh.py`` of ``abaheti95/LoL-RL``), over both responses of each pair.

    .. math::

        L = \tfrac12 \sum_{y \in \{y_w, y_l\}} -\log\pi_\theta(y|x)\cdot
            \mathrm{clip}\big(\mathrm{sg}[\pi_\theta(y|x)/\pi_{ref}(y|x)],\, 1-\epsilon,\, 1+\epsilon\big)\cdot
            \max(A(x, y), 0)

    The whole response is one action; A = R(x, y) − V_ref(x) is the advantage over the
    reference's value (``chosen_advantages``, ``rejected_advantages``: in the loop, the judge score
    minus the mean score of the round-start policy's samples of the prompt, a Monte-Carlo V_ref
    where the authors fit a value head). Responses with A ≤ 0 contribute nothing ("leftover
    lunch"); the code also drops them from the data and samples the rest ∝ A, while here every
    pair is visited once per epoch. The ½ makes the batch loss the mean over the 2B responses.
    ``variant="ref_free"`` sets the ratio to 1 (no reference). ``variant="seq"`` ("A-LoL seq")
    clips a ratio per token instead of per sequence:

    .. math::

        -\log\pi_\theta(y|x)\cdot\mathrm{clip}(\ldots) \;\to\; -\sum_t
            \mathrm{clip}\big(\mathrm{sg}[\pi_\theta(y_t|x, y_{<t})/\pi_{ref}(y_t|x, y_{<t})],\, 1-\epsilon,\, 1+\epsilon\big)
            \log\pi_\theta(y_t|x, y_{<t})

    whose per-response sums the log-prob engine computes with the reference at every step
    (``chosen_clipped_ratio_logps``, ``rejected_clipped_ratio_logps``).

    Inputs: policy (and, for ``alol``, reference) chosen/rejected summed log-probs, for ``seq``
    the two clipped-ratio sums, and the two advantages, [B] each. Output losses: [B]. Own
    metrics: ``alol/positive_fraction`` (responses with A > 0), ``alol/ratio_chosen`` (mean
    clipped ratio of y_w; for ``seq`` its token-weighted mean Σ_t r_t log π_t / log π(y_w)),
    ``alol/advantage_chosen``, ``alol/log_ratio`` (mean log π_θ(y)/π_ref(y) over both responses,
    before clipping; ``alol`` variant).

    Args:
        epsilon: ε in [0, 1), the ratio clip (``ppo_clip``). Default 0.9, so ratios in [0.1, 1.9].
        variant: ``"alol"`` (default), ``"seq"`` or ``"ref_free"``.
    """

    def __init__(self, epsilon: float = 0.9, variant: str = "alol") -> None:
        validate_range(self.name, "epsilon", epsilon, 0.0, 1.0)
        if variant not in VARIANTS:
            raise ConfigError(f"objective '{self.name}': variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        self.epsilon = float(epsilon)
        self.variant = variant

    @property
    def requires(self) -> frozenset[str]:  # type: ignore[override]
        extra = {"alol": REFERENCE_PAIR, "seq": CLIPPED_RATIO_FIELDS, "ref_free": frozenset()}[self.variant]
        return ADVANTAGES | extra

    @property
    def token_ratio_clip(self) -> float | None:  # type: ignore[override]
        return self.epsilon if self.variant == "seq" else None

    def ratio(self, policy_logps: torch.Tensor, reference_logps: torch.Tensor | None) -> torch.Tensor:
        """clip(sg[π_θ/π_ref], 1−ε, 1+ε): [B]; ones for ``ref_free``."""
        if self.variant == "ref_free":
            return torch.ones_like(policy_logps).detach()
        return torch.exp((policy_logps - reference_logps).detach()).clamp(1 - self.epsilon, 1 + self.epsilon)

    def compute(self, batch: PreferenceBatch) -> ObjectiveOutput:
        terms, metrics = [], logp_metrics(batch)
        for role in ("chosen", "rejected"):
            advantage = getattr(batch, f"{role}_advantages").clamp_min(0)
            logps = getattr(batch, f"policy_{role}_logps")
            if self.variant == "seq":
                weighted = getattr(batch, f"{role}_clipped_ratio_logps")
                # The token-weighted mean ratio, for the metric (1 for an empty response).
                nonzero = logps.detach() != 0
                ratio = torch.where(nonzero, weighted.detach() / torch.where(nonzero, logps.detach(), 1), 1)
            else:
                ratio = self.ratio(logps, getattr(batch, f"reference_{role}_logps"))
                weighted = logps * ratio
            terms.append(-weighted * advantage)
            if role == "chosen":
                metrics["alol/ratio_chosen"] = ratio.mean()
                metrics["alol/advantage_chosen"] = batch.chosen_advantages.detach().mean()
        if self.variant == "alol":
            s_w, s_l = logratios(batch)
            metrics["alol/log_ratio"] = 0.5 * (s_w + s_l).detach().mean()
        positive = torch.cat([batch.chosen_advantages, batch.rejected_advantages]) > 0
        metrics["alol/positive_fraction"] = positive.to(batch.policy_chosen_logps.dtype).mean()
        return ObjectiveOutput(losses=0.5 * (terms[0] + terms[1]), metrics=metrics)
