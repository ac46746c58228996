"""The judge interface: score responses, compare two responses, rank a prompt's candidates.

A judge is either **pointwise** (``score``: one number per (prompt, response), higher is better)
or **pairwise** (``compare``: P(response a is better than response b) in [0, 1]). The loop does
not need to know which: ``rank_scores_batch`` turns K candidates per prompt into K numbers
(higher is better) for every kind of judge.

Every value a judge returns is validated here, once, for all kinds: a non-numeric value, NaN or
±inf, a probability outside [0, 1], or the wrong number of values is a ``JudgeError`` naming the
judge and the item. A value is never replaced by a default.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from selm.config import StrictModel
from selm.errors import JudgeError


class ItemFailure(Exception):
    """Raised by a judge implementation when item ``index`` of the current call cannot be judged.

    ``Judge`` turns it into a ``JudgeError`` that names the judge and the item in the caller's
    terms (``item 3``, or ``prompt 1, candidate 2`` when ranking).
    """

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index = index
        self.message = message


def _as_float(value: Any) -> float | None:
    """``value`` as a float if it is a real number (Python, NumPy or 0-d tensor), else None.

    Strings are rejected even when they look like numbers: a judge that returns text has a bug.
    """
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "item") and tuple(getattr(value, "shape", (None,))) == ():
        return _as_float(value.item())
    return None


def _as_list(values: Any) -> list[Any] | None:
    """A sequence, array or tensor of values as a Python list (None if it is not a sequence)."""
    if hasattr(values, "tolist") and not isinstance(values, (str, bytes)):
        values = values.tolist()
    if isinstance(values, (list, tuple)):
        return list(values)
    return None


class Judge:
    """Base class of every judge.

    Subclasses set ``kind`` and ``Options`` (a pydantic model of their spec keys), build
    themselves from validated options in ``__init__``, and implement ``_score`` (pointwise) or
    ``_compare`` (pairwise, with ``is_pairwise`` True). Callers use the public methods, which
    check the inputs and validate every returned value.

    Attributes:
        is_pairwise: True when the judge's native output is a comparison of two responses.
        both_orders: pairwise judges only: ``compare`` asks the judge for (a, b) and for (b, a)
            (in one batch) and returns ``½·(P(a ≻ b) + 1 − P(b ≻ a))``, cancelling position bias.
        order_invariant: pairwise judges only: the judge's own comparison is already
            position-debiased (e.g. PairRM scores both orders internally).
    """

    kind: ClassVar[str] = ""
    Options: ClassVar[type[StrictModel]] = StrictModel
    is_pairwise: bool = False
    both_orders: bool = False
    order_invariant: bool = False

    def __init__(self, options: StrictModel):
        self.options = options

    # ----- identity --------------------------------------------------------------------------

    @property
    def label(self) -> str:
        """Short description of what this judge is (a model path, a callable, ...)."""
        return ""

    @property
    def name(self) -> str:
        """``kind 'label'``, as used in every error message."""
        return f"{self.kind} '{self.label}'" if self.label else self.kind

    def config(self) -> dict[str, Any]:
        """The judge's spec with every option resolved (safe to dump: holds no secrets)."""
        return {"kind": self.kind, **self.options.model_dump(mode="json")}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "kind")
        return f"{type(self).__name__}({params})"

    # ----- around the judging ------------------------------------------------------------------

    def check(self) -> None:
        """Fail now, with one clear error, if the judge cannot work (a remote judge's server is
        unreachable or refuses the config); called once when a run starts. Local judges: nothing.

        Raises:
            JudgeError: the judge cannot work; the message says what to fix.
        """

    @contextlib.contextmanager
    def keeping_answers(self, path: Path) -> Iterator[None]:
        """Within the block, a judge whose answers are slow to get (a remote LLM) keeps each one in
        ``path`` as it arrives and reuses those already there, so an interrupted call continues
        where it stopped. Other judges: nothing kept."""
        yield

    # ----- what subclasses implement ----------------------------------------------------------

    def _score(self, prompts: list[str], responses: list[str]) -> Sequence[Any]:
        """Raw scores of (prompts[i], responses[i]); validated by ``score``. Pointwise judges only."""
        raise NotImplementedError

    def _compare(self, prompts: list[str], responses_a: list[str], responses_b: list[str]) -> Sequence[Any]:
        """Raw P(a ≻ b) per item; validated by ``compare``. Only pairwise judges implement it."""
        raise NotImplementedError

    # ----- public API ---------------------------------------------------------------------------

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        """Pointwise scores, one per (prompts[i], responses[i]); higher is better.

        Raises:
            JudgeError: the judge is pairwise, or returned an unusable value (named by item index).
        """
        if self.is_pairwise:
            raise JudgeError(f"judge {self.name} is pairwise and has no pointwise score; "
                             f"use compare() or rank_scores()")
        _check_lengths(self.name, prompts=prompts, responses=responses)
        return self._checked_scores(prompts, responses, _item)

    def compare(self, prompts: list[str], responses_a: list[str], responses_b: list[str]) -> list[float]:
        """P(responses_a[i] is better than responses_b[i] for prompts[i]), each in [0, 1].

        Pairwise judges answer natively. Pointwise judges answer with the win indicator of their
        scores: 1.0 if a scores higher, 0.0 if lower, 0.5 on an exact tie — scale-free, so it
        means the same for a reward model and for a rule.
        """
        _check_lengths(self.name, prompts=prompts, responses_a=responses_a, responses_b=responses_b)
        return self._checked_compare(prompts, responses_a, responses_b, _item)

    def rank_scores(self, prompt: str, candidates: list[str]) -> list[float]:
        """One number per candidate of ``prompt``, higher is better (see ``rank_scores_batch``)."""
        return self.rank_scores_batch([prompt], [candidates])[0]

    def rank_scores_batch(self, prompts: list[str], candidates: list[list[str]]) -> list[list[float]]:
        """Rank the K_i candidates of every prompt i, whatever the judge's kind; higher is better.

        Pointwise judges: the candidates' scores, judged in one batch over all prompts.

        Pairwise judges: a round robin over the candidates of each prompt. Candidate i gets its
        expected number of wins, ``Σ_{j≠i} ½·(P(c_i ≻ c_j) + 1 − P(c_j ≻ c_i))``, a soft
        Copeland count in [0, K−1]. Every ordered pair is judged once, so the judge's position
        bias cancels; when ``compare`` is already symmetric (``both_orders`` or
        ``order_invariant``) each unordered pair is asked once and counts for both orders.
        All pairs of all prompts go to the judge in one call.

        Returns:
            ``scores[i][k]`` for candidate k of prompt i.
        """
        _check_lengths(self.name, prompts=prompts, candidates=candidates)
        if self.is_pairwise:
            return self._round_robin(prompts, candidates)
        flat = [(i, k) for i, cands in enumerate(candidates) for k in range(len(cands))]
        values = self._checked_scores(
            [prompts[i] for i, _ in flat],
            [candidates[i][k] for i, k in flat],
            lambda n: f"prompt {flat[n][0]}, candidate {flat[n][1]}",
        )
        out: list[list[float]] = [[] for _ in prompts]
        for (i, _), value in zip(flat, values):
            out[i].append(value)
        return out

    # ----- internals ----------------------------------------------------------------------------

    def _round_robin(self, prompts: list[str], candidates: list[list[str]]) -> list[list[float]]:
        # Which ordered pairs (i, j) to ask: all of them, or i < j when compare() is symmetric.
        symmetric = self.both_orders or self.order_invariant
        pairs = [
            (p, i, j)
            for p, cands in enumerate(candidates)
            for i in range(len(cands))
            for j in range(len(cands))
            if (i < j if symmetric else i != j)
        ]
        probs = self._checked_compare(
            [prompts[p] for p, _, _ in pairs],
            [candidates[p][i] for p, i, _ in pairs],
            [candidates[p][j] for p, _, j in pairs],
            lambda n: f"prompt {pairs[n][0]}, candidates {pairs[n][1]} vs {pairs[n][2]}",
        )
        # An ordered pair is half of the evidence about {i, j}; a symmetric answer is all of it.
        weight = 1.0 if symmetric else 0.5
        wins = [[0.0] * len(cands) for cands in candidates]
        for (p, i, j), prob in zip(pairs, probs):
            wins[p][i] += weight * prob
            wins[p][j] += weight * (1.0 - prob)
        return wins

    def _checked_scores(self, prompts: list[str], responses: list[str], where: Callable[[int], str]) -> list[float]:
        if not prompts:
            return []
        raw = self._call(lambda: self._score(prompts, responses), where)
        return _validate(self.name, raw, len(prompts), where, "score")

    def _checked_compare(self, prompts: list[str], responses_a: list[str], responses_b: list[str],
                         where: Callable[[int], str]) -> list[float]:
        if not prompts:
            return []
        if not self.is_pairwise:
            # One scoring batch for both sides: a's first, then b's.
            n = len(prompts)
            scores = self._checked_scores(prompts + prompts, responses_a + responses_b,
                                          lambda k: where(k % n) + (" (a)" if k < n else " (b)"))
            return [1.0 if sa > sb else 0.0 if sa < sb else 0.5 for sa, sb in zip(scores[:n], scores[n:])]
        if not self.both_orders:
            return self._validated_compare(prompts, responses_a, responses_b, where)
        n = len(prompts)
        probs = self._validated_compare(
            prompts + prompts, responses_a + responses_b, responses_b + responses_a,
            lambda k: where(k % n) + (" (order a, b)" if k < n else " (order b, a)"),
        )
        return [0.5 * (forward + 1.0 - backward) for forward, backward in zip(probs[:n], probs[n:])]

    def _validated_compare(self, prompts: list[str], responses_a: list[str], responses_b: list[str],
                           where: Callable[[int], str]) -> list[float]:
        raw = self._call(lambda: self._compare(prompts, responses_a, responses_b), where)
        return _validate(self.name, raw, len(prompts), where, "probability", unit_interval=True)

    def _call(self, fn: Callable[[], Sequence[Any]], where: Callable[[int], str]) -> Sequence[Any]:
        try:
            return fn()
        except ItemFailure as exc:
            raise JudgeError(f"judge {self.name}: {where(exc.index)}: {exc.message}") from None


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _item(index: int) -> str:
    return f"item {index}"


def _check_lengths(judge: str, **columns: Sequence[Any]) -> None:
    """Every column must have the same length (prompt i goes with response i)."""
    sizes = {name: len(col) for name, col in columns.items()}
    if len(set(sizes.values())) > 1:
        shown = ", ".join(f"{len_} {name}" for name, len_ in sizes.items())
        raise JudgeError(f"judge {judge}: inputs of different lengths ({shown})")


def _validate(judge: str, raw: Any, expected: int, where: Callable[[int], str], what: str,
              unit_interval: bool = False) -> list[float]:
    """Check ``raw`` is ``expected`` finite numbers (in [0, 1] if ``unit_interval``)."""
    values = _as_list(raw)
    if values is None:
        raise JudgeError(f"judge {judge}: expected a list of {expected} {what}s, got {type(raw).__name__}")
    if len(values) != expected:
        raise JudgeError(f"judge {judge}: returned {len(values)} {what}s for {expected} items")
    out = []
    for index, value in enumerate(values):
        number = _as_float(value)
        if number is None:
            raise JudgeError(f"judge {judge}: {where(index)}: {what} {_short_repr(value)} is not a number")
        if not math.isfinite(number):
            raise JudgeError(f"judge {judge}: {where(index)}: {what} is {number}")
        if unit_interval and not 0.0 <= number <= 1.0:
            raise JudgeError(f"judge {judge}: {where(index)}: {what} {number} is outside [0, 1]")
        out.append(number)
    return out
