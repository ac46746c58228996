"""Member judges of a composite judge (``ensemble``, ``vector``): building them, and scoring every
candidate of every prompt with each of them in one batch per member."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from selm.errors import ConfigError, JudgeError
from selm.judges.base import Judge
from selm.judges.registry import build_judge


class CompositeJudge(Judge):
    """A judge made of member judges (``self.members``): checking it checks every member, and
    keeping its answers keeps each member's (a remote LLM member's) in a file of its own."""

    members: list[Judge]

    def check(self) -> None:
        for member in self.members:
            member.check()

    @contextlib.contextmanager
    def keeping_answers(self, path: Path) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for index, member in enumerate(self.members):
                stack.enter_context(member.keeping_answers(path.with_name(f"{path.stem}.member{index}{path.suffix}")))
            yield


def build_member_judges(kind: str, specs: list[dict[str, Any]], why_pointwise: str) -> list[Judge]:
    """Build the member judges of a ``kind`` judge from their specs; each must be pointwise.

    Raises:
        ConfigError: a member's spec is invalid, or the member is pairwise (``why_pointwise`` says
            why that is refused); the message names ``judges[i]``.
    """
    members = []
    for index, spec in enumerate(specs):
        try:
            member = build_judge(spec)
        except ConfigError as exc:
            raise ConfigError(f"judge '{kind}': judges[{index}]: {exc}") from None
        if member.is_pairwise:
            raise ConfigError(f"judge '{kind}': judges[{index}]: {member.name} is pairwise; {why_pointwise}")
        members.append(member)
    return members


def member_score_grid(judge: str, prompts: list[str], candidates: list[list[str]],
                      columns: Callable[[list[str], list[str]], list[list[float]]]) -> list[list[list[float]]]:
    """Every member's score of every candidate, grouped by prompt and candidate.

    Args:
        judge: the composite judge's name, for messages.
        prompts: P prompts.
        candidates: candidates[i] is the K_i responses to prompts[i].
        columns: (flat prompts, flat responses) -> J lists of N scores, one per member, for the
            N = Σ K_i items in prompt-then-candidate order (all prompts in one batch per member).

    Returns:
        ``grid[i][k][j]``: member j's score of candidate k of prompt i.

    Raises:
        JudgeError: ``prompts`` and ``candidates`` differ in length.
    """
    if len(prompts) != len(candidates):
        raise JudgeError(f"judge {judge}: inputs of different lengths ({len(prompts)} prompts, "
                         f"{len(candidates)} candidates)")
    flat_prompts = [prompt for prompt, cands in zip(prompts, candidates) for _ in cands]
    flat_responses = [response for cands in candidates for response in cands]
    if not flat_responses:
        return [[] for _ in prompts]
    by_item = list(zip(*columns(flat_prompts, flat_responses)))
    grid: list[list[list[float]]] = []
    start = 0
    for cands in candidates:
        grid.append([list(item) for item in by_item[start:start + len(cands)]])
        start += len(cands)
    return grid
