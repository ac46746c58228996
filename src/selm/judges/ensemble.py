"""``ensemble`` judge: several pointwise judges combined as mean − k·std, per item.

Spec::

    {kind: ensemble, k: 1.0, normalize: true,
     judges: [{kind: reward_model, path: rm-a}, {kind: reward_model, path: rm-b}]}

For item n with member scores s_1..s_J (after the optional normalisation):
``score_n = mean_j(s_j) − k · std_j(s_j)``, std with ddof=0 (population). k > 0 is the
pessimistic (uncertainty-penalised) ensemble; k = 0 is the plain mean.

``normalize: true`` first turns each member's scores into z-scores over the batch being scored
(``(s − mean) / std``), so members on different scales weigh the same. The z-scores depend on
the batch: ``rank_scores_batch`` scores all candidates of all prompts as one batch. A member
whose scores are all equal over the batch has no spread to standardise; its z-scores are 0
(it says nothing about which item is better).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field

from selm.config import StrictModel
from selm.errors import ConfigError
from selm.judges.base import Judge
from selm.judges.registry import build_judge, register_judge_kind


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


@register_judge_kind
class EnsembleJudge(Judge):
    """Pointwise judge combining the scores of its member judges."""

    kind = "ensemble"

    class Options(StrictModel):
        """Spec keys of the ``ensemble`` judge."""

        judges: list[dict[str, Any]] = Field(min_length=1)
        k: float = 0.0
        normalize: bool = False

    def __init__(self, options: Options):
        super().__init__(options)
        self.members: list[Judge] = []
        for index, spec in enumerate(options.judges):
            try:
                member = build_judge(spec)
            except ConfigError as exc:
                raise ConfigError(f"judge 'ensemble': judges[{index}]: {exc}") from None
            if member.is_pairwise:
                raise ConfigError(f"judge 'ensemble': judges[{index}]: {member.name} is pairwise; "
                                  f"an ensemble combines pointwise scores")
            self.members.append(member)

    @property
    def label(self) -> str:
        return " + ".join(m.name for m in self.members)

    def _score(self, prompts: list[str], responses: list[str]) -> list[float]:
        # Each member validates its own scores (errors name the member and the item).
        columns = [member.score(prompts, responses) for member in self.members]
        if self.options.normalize:
            columns = [_zscores(col) for col in columns]
        out = []
        for item in zip(*columns):
            mean, std = _mean_std(list(item))
            out.append(mean - self.options.k * std)
        return out


def _zscores(values: list[float]) -> list[float]:
    mean, std = _mean_std(values)
    if std == 0.0:
        return [0.0] * len(values)
    return [(v - mean) / std for v in values]
