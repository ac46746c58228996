"""Weighted sums of objectives (like TRL's list of ``loss_type`` with ``loss_weights``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from selm.errors import ConfigError
from selm.objectives.base import Objective, ObjectiveOutput, PreferenceBatch


class WeightedObjective(Objective):
    """L = Σ_k w_k · L_k, per example.

    Metrics of every part are kept under their own names; each part's mean loss is also logged
    as ``loss/<name>``. When two parts log the same metric name, the first one's value is kept.
    """

    name = "weighted"

    def __init__(self, parts: Sequence[tuple[Objective, float]]):
        if not parts:
            raise ConfigError("a weighted objective needs at least one part")
        self.parts = list(parts)
        self.requires = frozenset().union(*(p.requires for p, _ in self.parts))

    def compute(self, batch: PreferenceBatch) -> ObjectiveOutput:
        total: torch.Tensor | None = None
        metrics: dict[str, torch.Tensor] = {}
        for objective, weight in self.parts:
            out = objective(batch)
            total = weight * out.losses if total is None else total + weight * out.losses
            metrics.setdefault(f"loss/{objective.name}", out.losses.detach().mean())
            for key, value in out.metrics.items():
                metrics.setdefault(key, value)
        assert total is not None
        return ObjectiveOutput(losses=total, metrics=metrics)

    def __repr__(self) -> str:
        return " + ".join(f"{w}·{p!r}" for p, w in self.parts)
