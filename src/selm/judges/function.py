"""``function`` judge: a user's Python callable scores each (prompt, response).

Spec::

    {kind: function, callable: "my_pkg.rewards:score"}             # fn(prompt, response) -> float
    {kind: function, callable: "rewards.py:score_all", batched: true}  # fn(prompts, responses) -> list[float]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from selm.config import StrictModel
from selm.judges.base import Judge
from selm.judges.callables import call_batched, call_per_item, load_callable
from selm.judges.registry import register_judge_kind


@register_judge_kind
class FunctionJudge(Judge):
    """Pointwise judge over a Python callable loaded from ``module:name`` or ``file.py:name``."""

    kind = "function"

    class Options(StrictModel):
        """Spec keys of the ``function`` judge."""

        callable: str
        batched: bool = False

    def __init__(self, options: Options):
        super().__init__(options)
        self.fn = load_callable(options.callable, f"judge '{self.kind}': callable")

    @property
    def label(self) -> str:
        return self.options.callable

    def _score(self, prompts: list[str], responses: list[str]) -> Sequence[Any]:
        if self.options.batched:
            return call_batched(self.name, self.fn, prompts, responses)
        return call_per_item(self.fn, list(zip(prompts, responses)))
