"""LCPO (Cao et al. 2025): EM re-weighting of any preference objective for noisy labels."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from selm.errors import ConfigError
from selm.objectives.base import (
    Objective,
    ObjectiveOutput,
    PreferenceBatch,
    register_objective,
    validate_range,
)
from selm.objectives.fields import PREFERENCE_FIELDS


def flipped(batch: PreferenceBatch) -> PreferenceBatch:
    """The same pairs with chosen and rejected exchanged (a soft label p becomes 1 − p).

    The fields that trade places are read from the live table, so an objective's own registered
    pair of fields (FPO's features, carried in ``extra``) is exchanged too.
    """
    changes: dict[str, Any] = {}
    extra = dict(batch.extra)
    extensions = PREFERENCE_FIELDS.extensions
    for a, b in PREFERENCE_FIELDS.counterparts("chosen", "rejected"):
        target = extra if a in extensions else changes
        target[a], target[b] = getattr(batch, b), getattr(batch, a)
    if batch.label_probs is not None:
        changes["label_probs"] = 1 - batch.label_probs
    return replace(batch, **changes, extra={k: v for k, v in extra.items() if v is not None})


@register_objective("lcpo")
class LCPO(Objective):
    r"""Latent Collective Preference Optimization, https://arxiv.org/abs/2509.24159 (v3: RE-PO):
    any preference loss ℓ, re-weighted by the posterior that each label is correct.

    The loss is mapped to a probability through its Gibbs distribution, for each pair i
    (ℓ_i on the pair as labelled, ℓ̄_i on the pair with chosen and rejected exchanged):

    .. math::

        p_i = \frac{e^{-\ell_i}}{e^{-\ell_i} + e^{-\bar\ell_i}} = \sigma(\bar\ell_i - \ell_i), \qquad
        w_i = \frac{\eta\,p_i}{\eta\,p_i + (1-\eta)(1-p_i)} \;\text{(E-step, no gradient)}

        L_i = w_i\,\ell_i + (1 - w_i)\,\bar\ell_i \;\text{(M-step; only } w_i\,\ell_i \text{ with complement=False)}

    For DPO, p_i = σ(βh_i) and L is cDPO with a per-pair, learned smoothing 1 − w_i. η is the
    annotators' reliability P(label correct); after every training step (autograd on) it moves
    towards the batch's mean posterior: η ← (1 − m)·η + m·mean_i w_i (the paper's EMA update).
    η is state kept in this object across steps and rounds (``state_dict``): the trainer saves it
    in its checkpoints and the loop in each round's manifest, so a resumed run continues from the
    η it had reached. The exact M-step (with or without the flipped term) was not checked against
    the paper (ALGORITHMS.md): both are offered.

    Inputs: whatever ``base`` requires. Output losses: [B]. Metrics: the base's, plus
    ``lcpo/reliability`` (η used for this batch) and ``lcpo/weight`` (mean w).

    Args:
        base: the wrapped objective, as in a recipe: a name or ``{name: ..., <hyperparameters>}``.
            Default ``dpo``.
        reliability: initial η in (0.5, 1). Default 0.9.
        momentum: m in [0, 1), the EMA step of η; 0 keeps η fixed. Default 0.1.
        complement: include the (1 − w)·ℓ̄ term. Default True.
    """

    def __init__(self, base: str | dict[str, Any] = "dpo", reliability: float = 0.9, momentum: float = 0.1,
                 complement: bool = True) -> None:
        from selm.objectives import build_objective

        if isinstance(base, dict) and base.get("name") == "lcpo" or base == "lcpo":
            raise ConfigError(f"objective '{self.name}': base cannot itself be lcpo")
        self._base: Objective = build_objective(base)
        validate_range(self.name, "reliability", reliability, 0.5, 1.0, low_open=True)
        validate_range(self.name, "momentum", momentum, 0.0, 1.0)
        if not isinstance(complement, bool):
            raise ConfigError(f"objective '{self.name}': complement must be true or false, got {complement!r}")
        self.reliability = float(reliability)
        self.momentum = float(momentum)
        self.complement = complement

    @property
    def base(self) -> Objective:
        """The wrapped objective."""
        return self._base

    @property
    def requires(self) -> frozenset[str]:  # type: ignore[override]
        return self._base.requires

    @property
    def token_ratio_clip(self) -> float | None:  # type: ignore[override]
        return self._base.token_ratio_clip

    def state_dict(self) -> dict[str, float]:
        """{"reliability": η} and the base's state under ``base.``."""
        return {"reliability": self.reliability, **{f"base.{k}": v for k, v in self._base.state_dict().items()}}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.reliability = float(state["reliability"])
        self._base.load_state_dict({k[len("base."):]: v for k, v in state.items() if k.startswith("base.")})

    def posterior(self, losses: torch.Tensor, flipped_losses: torch.Tensor) -> torch.Tensor:
        """w: [B], the posterior that each label is correct (detached)."""
        p = torch.sigmoid((flipped_losses - losses).detach())
        eta = self.reliability
        return eta * p / (eta * p + (1 - eta) * (1 - p))

    def compute(self, batch: PreferenceBatch) -> ObjectiveOutput:
        out = self.base(batch)
        out_flipped = self.base(flipped(batch))
        w = self.posterior(out.losses, out_flipped.losses)
        losses = w * out.losses + ((1 - w) * out_flipped.losses if self.complement else 0)
        metrics = dict(out.metrics)
        metrics["lcpo/reliability"] = torch.tensor(self.reliability, dtype=w.dtype)
        metrics["lcpo/weight"] = w.mean()
        if torch.is_grad_enabled() and out.losses.requires_grad:
            self.reliability = (1 - self.momentum) * self.reliability + self.momentum * float(w.mean())
        return ObjectiveOutput(losses=losses, metrics=metrics)

    def __repr__(self) -> str:
        return f"LCPO(base={self.base!r}, reliability={self.reliability}, momentum={self.momentum})"
