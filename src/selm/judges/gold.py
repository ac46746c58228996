"""``gold`` judge: the programmatic reward of a task, found by name in the task registry.

Any registered task can be the judge, a built-in one or a user's (``selm.tasks.register_task``).
Spec::

    {kind: gold, task: sort}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from selm.config import StrictModel
from selm.errors import ConfigError
from selm.judges.base import Judge
from selm.judges.callables import call_batched
from selm.judges.registry import register_judge_kind


@register_judge_kind
class GoldJudge(Judge):
    """Pointwise judge calling a task's ``gold_reward`` on the whole batch."""

    kind = "gold"

    class Options(StrictModel):
        """Spec keys of the ``gold`` judge."""

        task: str = Field(description="name of a registered task (selm.tasks.available_tasks())")

    def __init__(self, options: Options):
        super().__init__(options)
        # Imported here: the tasks package brings in torch and transformers (starting models).
        from selm.tasks import get_task

        try:
            self.fn = get_task(options.task).gold_reward
        except ConfigError as exc:
            raise ConfigError(f"judge '{self.kind}': task: {exc}") from None

    @property
    def label(self) -> str:
        return self.options.task

    def _score(self, prompts: list[str], responses: list[str]) -> Sequence[Any]:
        return call_batched(self.name, self.fn, prompts, responses)
