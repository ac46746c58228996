"""``vector`` judge: K pointwise judges whose scores form a reward vector, for multi-objective methods.

Spec::

    {kind: vector, judges: [{kind: reward_model, path: harmless-rm}, {kind: function, callable: m:length}]}

``reward_vectors_batch`` gives every candidate its K rewards, one per member, in the members'
order and units (objective j is member j). A multi-objective objective (PAMA) reads them; methods
that need one number per candidate (pairing, ranking, evaluation) read ``rank_scores_batch``, which
is the members' plain mean: a neutral summary, not a weighting chosen by any paper, so put the
members on comparable scales when that summary matters.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from selm.config import StrictModel
from selm.errors import ConfigError
from selm.judges.base import Judge
from selm.judges.members import CompositeJudge, build_member_judges, member_score_grid
from selm.judges.registry import register_judge_kind


@register_judge_kind
class VectorJudge(CompositeJudge):
    """Pointwise judge whose native output is one reward per member judge (objective)."""

    kind = "vector"
    is_vector: ClassVar[bool] = True

    class Options(StrictModel):
        """Spec keys of the ``vector`` judge."""

        judges: list[dict[str, Any]] = Field(min_length=1, description="one pointwise judge per objective")

    def __init__(self, options: Options):
        super().__init__(options)
        self.members: list[Judge] = build_member_judges(self.kind, options.judges,
                                                        "each objective needs a pointwise reward")

    @property
    def label(self) -> str:
        return ", ".join(m.name for m in self.members)

    @property
    def num_objectives(self) -> int:
        """K, the length of every reward vector."""
        return len(self.members)

    def _member_columns(self, prompts: list[str], responses: list[str]) -> list[list[float]]:
        # Each member validates its own scores (errors name the member and the item).
        return [member.score(prompts, responses) for member in self.members]

    def _score(self, prompts: list[str], responses: list[str]) -> list[float]:
        return [sum(item) / len(item) for item in zip(*self._member_columns(prompts, responses))]

    def reward_vectors_batch(self, prompts: list[str], candidates: list[list[str]]) -> list[list[list[float]]]:
        """The reward vector of every candidate of every prompt, each member scoring all candidates
        of all prompts in one batch.

        Returns:
            ``rewards[i][k][j]``: member (objective) j's reward for candidate k of prompt i, in that
            member's units: shape [P][K_i][K].

        Raises:
            JudgeError: inputs of different lengths, or a member returned an unusable score.
        """
        return member_score_grid(self.name, prompts, candidates, self._member_columns)


def require_vector_judge(judge: Judge, objective: str) -> None:
    """Refuse a multi-objective ``objective`` (e.g. ``pama``) with a judge that returns one reward.

    Raises:
        ConfigError: ``judge`` is not a ``vector`` judge.
    """
    if not getattr(judge, "is_vector", False):
        raise ConfigError(f"objective '{objective}' needs a judge that returns a vector of rewards "
                          f"(kind: vector), got '{judge.kind}'")
