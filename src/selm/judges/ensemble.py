"""``ensemble`` judge: several pointwise judges combined per item, as mean − k·std or robustly.

Spec::

    {kind: ensemble, k: 1.0, normalize: true,
     judges: [{kind: reward_model, path: rm-a}, {kind: reward_model, path: rm-b}]}

For item n with member scores s_1..s_J (after the optional normalisation):
``score_n = mean_j(s_j) − k · std_j(s_j)``, std with ddof=0 (population). k > 0 is the
pessimistic (uncertainty-penalised) ensemble; k = 0 is the plain mean.

``robust_lambda: λ`` (in [0, 1], with k = 0) scores instead with reward-robust RLHF's trade-off
(Yan et al. 2024, BRME, https://arxiv.org/abs/2409.15360, eq. 7: α·E[r_nom] + (1−α)·min_{r∈R} E[r]):
``score_n = λ · mean_j(s_j) + (1 − λ) · min_j(s_j)``. λ = 1 is the plain mean, λ = 0 the worst
case (Coste et al.'s WCO). Two choices differ from the paper, whose ensemble is one backbone with
Gaussian heads (μ_j, σ_j): the nominal reward there is μ of the head with the smallest σ, and
selm's members return a point score without σ, so the nominal here is the members' mean; and the
paper's robust term is the smallest *expected* reward over the set, while the minimum here is taken
per item, so E[min_j s_j] ≤ min_j E[s_j]: the same or more pessimistic, equal when one member is
lowest on every item.

``normalize: true`` first turns each member's scores into z-scores over the batch being scored
(``(s − mean) / std``), so members on different scales weigh the same. The z-scores depend on
the batch: ``rank_scores_batch`` scores all candidates of all prompts as one batch. A member
whose scores are all equal over the batch has no spread to standardise; its z-scores are 0
(it says nothing about which item is better).

``member_scores_batch`` returns, from the same single scoring pass, each member's scores, the
combined scores and the members' spread per item, for the loop to log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from selm.config import StrictModel
from selm.judges.base import Judge
from selm.judges.members import CompositeJudge, build_member_judges, member_score_grid
from selm.judges.registry import register_judge_kind


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


@dataclass(frozen=True)
class MemberScores:
    """An ensemble's scores of P prompts' candidates, member by member.

    Attributes:
        members: ``members[i][k][j]``: member j's score of candidate k of prompt i, z-scored over
            the batch when the ensemble normalises (what the combination reads), reward units otherwise.
        scores: ``scores[i][k]``: the ensemble's score (equal to ``rank_scores_batch``).
        spread: ``spread[i][k]``: the population std over members of ``members[i][k]``.
    """

    members: list[list[list[float]]]
    scores: list[list[float]]
    spread: list[list[float]]

    def member_means(self) -> list[float]:
        """[J] each member's mean score over every candidate of every prompt (empty for no candidates)."""
        items = [item for cands in self.members for item in cands]
        return [sum(column) / len(column) for column in zip(*items)]


@register_judge_kind
class EnsembleJudge(CompositeJudge):
    """Pointwise judge combining the scores of its member judges."""

    kind = "ensemble"

    class Options(StrictModel):
        """Spec keys of the ``ensemble`` judge."""

        judges: list[dict[str, Any]] = Field(min_length=1)
        k: float = 0.0
        normalize: bool = False
        robust_lambda: float | None = Field(None, ge=0.0, le=1.0, description=(
            "λ of reward-robust RLHF: score = λ·mean + (1−λ)·min over members; None: mean − k·std"))

        @field_validator("robust_lambda")
        @classmethod
        def _not_with_k(cls, robust_lambda: float | None, info: ValidationInfo) -> float | None:
            if robust_lambda is not None and info.data.get("k", 0.0) != 0.0:
                raise ValueError(f"cannot be combined with k={info.data['k']} (it replaces mean − k·std); set k to 0")
            return robust_lambda

    def __init__(self, options: Options):
        super().__init__(options)
        self.members: list[Judge] = build_member_judges(self.kind, options.judges,
                                                        "an ensemble combines pointwise scores")

    @property
    def label(self) -> str:
        return " + ".join(m.name for m in self.members)

    def _member_columns(self, prompts: list[str], responses: list[str]) -> list[list[float]]:
        """[J][N] each member's scores of the N items, z-scored when ``normalize``."""
        # Each member validates its own scores (errors name the member and the item).
        columns = [member.score(prompts, responses) for member in self.members]
        if self.options.normalize:
            columns = [_zscores(col) for col in columns]
        return columns

    def combine(self, item: list[float]) -> float:
        """One item's score from its J member scores (see the module docstring)."""
        mean, std = _mean_std(item)
        if self.options.robust_lambda is None:
            return mean - self.options.k * std
        lam = self.options.robust_lambda
        return lam * mean + (1.0 - lam) * min(item)

    def _score(self, prompts: list[str], responses: list[str]) -> list[float]:
        return [self.combine(list(item)) for item in zip(*self._member_columns(prompts, responses))]

    def member_scores_batch(self, prompts: list[str], candidates: list[list[str]]) -> MemberScores:
        """Member scores, combined scores and spread of every candidate of every prompt, scoring all
        candidates of all prompts as one batch per member (as ``rank_scores_batch`` does).

        Returns:
            ``MemberScores`` with shapes [P][K_i][J], [P][K_i], [P][K_i].

        Raises:
            JudgeError: inputs of different lengths, or a member returned an unusable score.
        """
        members = member_score_grid(self.name, prompts, candidates, self._member_columns)
        return MemberScores(
            members=members,
            scores=[[self.combine(item) for item in cands] for cands in members],
            spread=[[_mean_std(item)[1] for item in cands] for cands in members],
        )


def _zscores(values: list[float]) -> list[float]:
    mean, std = _mean_std(values)
    if std == 0.0:
        return [0.0] * len(values)
    return [(v - mean) / std for v in values]
