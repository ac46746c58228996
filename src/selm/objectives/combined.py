"""Weighted sums of objectives (like TRL's list of ``loss_type`` with ``loss_weights``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from selm.errors import ConfigError
from selm.objectives.base import (
    Objective,
    ObjectiveOutput,
    PreferenceBatch,
    validate_nonnegative,
)


class WeightedObjective(Objective):
    """L = Σ_k w_k · L_k, per example: [B].

    ``name`` joins the parts' names with ``+`` (``dpo+sft``) and ``requires`` is the union of the
    parts'. Metrics of every part are kept under their own names; each part's unweighted mean loss
    is also logged as ``loss/<name>``. When two parts log the same metric name (``rewards/chosen``
    of ``dpo`` and ``selm``, or the same objective twice), the first one's value is kept.

    Args:
        parts: (objective, weight) pairs; weights are finite and >= 0.
    """

    def __init__(self, parts: Sequence[tuple[Objective, float]]) -> None:
        if not parts:
            raise ConfigError("a weighted objective needs at least one part")
        for objective, weight in parts:
            validate_nonnegative(objective.name, weight=weight)
        self.parts = [(objective, float(weight)) for objective, weight in parts]
        self.name = "+".join(objective.name for objective, _ in self.parts)
        self.requires = frozenset().union(*(objective.requires for objective, _ in self.parts))
        clips = {objective.token_ratio_clip for objective, _ in self.parts} - {None}
        if len(clips) > 1:
            raise ConfigError(f"objective '{self.name}': the parts use different per-token ratio clips "
                              f"{sorted(clips)}; the engine computes one")
        self.token_ratio_clip = clips.pop() if clips else None

    def compute(self, batch: PreferenceBatch) -> ObjectiveOutput:
        total = torch.zeros_like(batch.policy_chosen_logps)
        metrics: dict[str, torch.Tensor] = {}
        for objective, weight in self.parts:
            out = objective(batch)
            total = total + weight * out.losses
            metrics.setdefault(f"loss/{objective.name}", out.losses.detach().mean())
            for key, value in out.metrics.items():
                metrics.setdefault(key, value)
        return ObjectiveOutput(losses=total, metrics=metrics)

    def state_dict(self) -> dict[str, float]:
        """Each part's state under ``<index>.``."""
        return {f"{i}.{k}": v for i, (objective, _) in enumerate(self.parts) for k, v in objective.state_dict().items()}

    def load_state_dict(self, state: dict[str, float]) -> None:
        for i, (objective, _) in enumerate(self.parts):
            own = {k[len(f"{i}."):]: v for k, v in state.items() if k.startswith(f"{i}.")}
            if own:
                objective.load_state_dict(own)

    def __repr__(self) -> str:
        return " + ".join(f"{w}·{p!r}" for p, w in self.parts)
