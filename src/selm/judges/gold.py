"""``gold`` judge: the programmatic reward of a built-in task, looked up by task name.

The tasks package registers its scorers here (``register_gold_reward``); this module never
imports ``selm.tasks``, so judges stay below tasks in the layering. Spec::

    {kind: gold, task: sort}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from selm.config import StrictModel
from selm.errors import ConfigError
from selm.judges.base import Judge
from selm.judges.callables import call_batched
from selm.judges.registry import register_judge_kind

GoldReward = Callable[[list[str], list[str]], Sequence[float]]

_GOLD_REWARDS: dict[str, GoldReward] = {}


def register_gold_reward(name: str, fn: GoldReward) -> None:
    """Register ``fn(prompts, responses) -> list[float]`` as the gold reward of task ``name``.

    Registering a name again replaces the scorer: a task object may be rebuilt (e.g. once per
    run in the same process) and its bound method is then a new object.
    """
    if not callable(fn):
        raise TypeError(f"gold reward '{name}' must be callable, got {type(fn).__name__}")
    _GOLD_REWARDS[name] = fn


def gold_rewards() -> list[str]:
    """Sorted names of the registered gold rewards."""
    return sorted(_GOLD_REWARDS)


@register_judge_kind
class GoldJudge(Judge):
    """Pointwise judge calling a registered task's gold reward on the whole batch."""

    kind = "gold"

    class Options(StrictModel):
        """Spec keys of the ``gold`` judge."""

        task: str

    def __init__(self, options: Options):
        super().__init__(options)
        if options.task not in _GOLD_REWARDS:
            known = ", ".join(gold_rewards()) or "none (is the task's package imported?)"
            raise ConfigError(f"judge 'gold': task: no gold reward registered for '{options.task}'; "
                              f"registered: {known}")
        self.fn = _GOLD_REWARDS[options.task]

    @property
    def label(self) -> str:
        return self.options.task

    def _score(self, prompts: list[str], responses: list[str]) -> Sequence[Any]:
        return call_batched(self.name, self.fn, prompts, responses)
