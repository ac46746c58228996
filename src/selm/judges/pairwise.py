"""``pairwise`` judge: P(a ≻ b) from a Python callable or from PairRM.

Spec, one of::

    {kind: pairwise, callable: "my_pkg.prefs:prob_a_better"}              # fn(prompt, a, b) -> P(a ≻ b)
    {kind: pairwise, callable: "prefs.py:batch_probs", batched: true}     # fn(prompts, as, bs) -> list[P]
    {kind: pairwise, model: llm-blender/PairRM, batch_size: 16}           # needs the llm_blender package

``both_orders: true`` asks a callable for (a, b) and (b, a) and averages
``½·(P(a ≻ b) + 1 − P(b ≻ a))``, cancelling a position bias. PairRM always scores both orders
itself (llm_blender's ``[A,B]+[B,A]`` mode), so the option does not apply to it.

PairRM lives in the optional ``llm_blender`` package, which is imported only when a PairRM
judge is built. It has broken with transformers v5 before (trl#4918); a missing or broken
install is one clear error naming the package.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import Field, model_validator

from selm.config import StrictModel
from selm.errors import ModelLoadError
from selm.judges.base import Judge
from selm.judges.callables import call_batched, call_per_item, load_callable
from selm.judges.registry import register_judge_kind

# (prompts, responses_a, responses_b) -> raw P(a ≻ b) per item
CompareFn = Callable[[list[str], list[str], list[str]], Sequence[Any]]


@register_judge_kind
class PairwiseJudge(Judge):
    """Pairwise judge over a callable or a PairRM ranker."""

    kind = "pairwise"
    is_pairwise = True

    class Options(StrictModel):
        """Spec keys of the ``pairwise`` judge (exactly one of ``callable`` and ``model``)."""

        callable: str | None = None
        batched: bool = False
        both_orders: bool = False
        model: str | None = None
        batch_size: int = Field(16, gt=0)
        device: str | None = None

        @model_validator(mode="after")
        def _one_source(self) -> PairwiseJudge.Options:
            if (self.callable is None) == (self.model is None):
                raise ValueError("set exactly one of 'callable' (a Python function) or 'model' (a PairRM checkpoint)")
            if self.model is not None and (self.batched or self.both_orders):
                raise ValueError("'batched' and 'both_orders' apply to a callable, not to a PairRM model")
            return self

    def __init__(self, options: Options):
        super().__init__(options)
        self._compare_fn: CompareFn
        if options.callable is not None:
            fn = load_callable(options.callable, f"judge '{self.kind}': callable")
            if options.batched:
                self._compare_fn = lambda p, a, b: call_batched(self.name, fn, p, a, b)
            else:
                self._compare_fn = lambda p, a, b: call_per_item(fn, list(zip(p, a, b)))
            self.both_orders = options.both_orders
        else:
            self._compare_fn = _load_pairrm(options.model, options.batch_size, options.device)
            self.order_invariant = True

    @property
    def label(self) -> str:
        return self.options.callable or self.options.model or ""

    def _compare(self, prompts: list[str], responses_a: list[str], responses_b: list[str]) -> Sequence[Any]:
        return self._compare_fn(prompts, responses_a, responses_b)


def _load_pairrm(model: str, batch_size: int, device: str | None) -> CompareFn:
    """A compare function over llm_blender's PairRM: P(a ≻ b) = sigmoid(logit of both orders)."""
    try:
        import llm_blender
    except Exception as exc:  # ImportError, or an install broken by a transformers upgrade
        raise ModelLoadError(
            f"judge 'pairwise': model '{model}' needs the 'llm_blender' package "
            f"(pip install llm-blender): {type(exc).__name__}: {exc}"
        ) from None
    blender = llm_blender.Blender()
    try:
        # device None: llm_blender's own default (cuda when available).
        blender.loadranker(model, device=device)
    except Exception as exc:  # llm_blender raises bare ValueError/OSError for unknown or unreachable checkpoints
        raise ModelLoadError(f"judge 'pairwise': PairRM model '{model}': {type(exc).__name__}: {exc}") from None

    def compare(prompts: list[str], responses_a: list[str], responses_b: list[str]) -> list[float]:
        logits = blender.compare(prompts, responses_a, responses_b, batch_size=batch_size,
                                 return_logits=True, mode="[A,B]+[B,A]")
        return [_sigmoid(float(x)) for x in logits]

    return compare


def _sigmoid(x: float) -> float:
    # Two branches so that exp never overflows for large |x|.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)
