"""Scored candidates → preference pairs (chosen, rejected), with explicit tie and duplicate rules.

Per prompt, in this order:

1. **Dedupe**: identical response strings are one candidate; the first occurrence (and its
   score) is kept, the others are counted in ``duplicates_removed``.
2. **Length penalty** (optional): each score becomes ``score − λ·length`` (length in tokens, given
   by the caller). Every later step, and the scores recorded on a pair, use this value.
3. **Strategy** picks candidate pairs among the distinct candidates (best = highest score; equal
   scores are ordered by candidate index, lowest first):

   - ``best_worst`` (default; SELM, RLHFlow ``max_min``): best vs worst.
   - ``best_random`` (RLHFlow ``max_random``): best vs a uniformly drawn other candidate.
   - ``best_second`` (RLHFlow ``max_max``): best vs second best.
   - ``all_pairs``: every unordered pair, oriented by score.

4. **Margin filter**: a pair is kept only if ``margin = chosen − rejected`` is > 0 (equal scores
   are a tie: dropped, never "first wins") and ≥ ``min_margin``; dropped pairs are counted.

A prompt with fewer than 2 distinct candidates yields no pair and is counted. The only
randomness (``best_random``) comes from a generator seeded by ``(seed, prompt key)``, so the
result is reproducible and a prompt's pair does not depend on which other prompts are present.
"""

from __future__ import annotations

import math
import numbers
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from itertools import combinations

from selm.errors import ConfigError, DataError

STRATEGIES = ("best_worst", "best_random", "best_second", "all_pairs")


@dataclass(frozen=True)
class Pair:
    """One preference pair of a prompt's candidates.

    Attributes:
        prompt_index: position of the prompt in the inputs of ``build_pairs``.
        prompt_key: the caller's id or key of that prompt.
        chosen_index / rejected_index: positions of the two responses in the prompt's candidates.
        chosen / rejected: the two response texts.
        chosen_score / rejected_score: their scores after the length penalty (the judge's scores
            when ``length_penalty`` is 0).
        margin: ``chosen_score − rejected_score`` (> 0).
    """

    prompt_index: int
    prompt_key: Hashable
    chosen_index: int
    rejected_index: int
    chosen: str
    rejected: str
    chosen_score: float
    rejected_score: float
    margin: float


@dataclass(frozen=True)
class PairStats:
    """What happened while pairing, for the round's metrics.

    Attributes:
        prompts: prompts given.
        pairs: pairs kept.
        duplicates_removed: candidates dropped as exact duplicates of an earlier one.
        ties_dropped: candidate pairs dropped because both scores were equal.
        below_margin_dropped: candidate pairs dropped because 0 < margin < ``min_margin``.
        prompts_too_few_candidates: prompts with fewer than 2 distinct candidates.
        prompts_without_pair: prompts that yielded no pair (for any reason).
        margin_mean / margin_min / margin_max: over the kept pairs; None when there are none.
    """

    prompts: int
    pairs: int
    duplicates_removed: int
    ties_dropped: int
    below_margin_dropped: int
    prompts_too_few_candidates: int
    prompts_without_pair: int
    margin_mean: float | None
    margin_min: float | None
    margin_max: float | None

    @property
    def tie_rate(self) -> float | None:
        """Dropped ties / candidate pairs considered (kept + dropped); None if none were considered."""
        considered = self.pairs + self.ties_dropped + self.below_margin_dropped
        return self.ties_dropped / considered if considered else None

    def as_metrics(self) -> dict[str, float | int | None]:
        """A flat ``pairs/...`` dict for the metrics file (None where a value is undefined)."""
        return {
            "pairs/count": self.pairs,
            "pairs/prompts": self.prompts,
            "pairs/prompts_without_pair": self.prompts_without_pair,
            "pairs/prompts_too_few_candidates": self.prompts_too_few_candidates,
            "pairs/duplicates_removed": self.duplicates_removed,
            "pairs/ties_dropped": self.ties_dropped,
            "pairs/below_margin_dropped": self.below_margin_dropped,
            "pairs/tie_rate": self.tie_rate,
            "pairs/margin_mean": self.margin_mean,
            "pairs/margin_min": self.margin_min,
            "pairs/margin_max": self.margin_max,
        }


def build_pairs(
    prompt_keys: Sequence[Hashable],
    candidates: Sequence[Sequence[str]],
    scores: Sequence[Sequence[float]],
    strategy: str = "best_worst",
    min_margin: float = 0.0,
    length_penalty: float = 0.0,
    lengths: Sequence[Sequence[int]] | None = None,
    seed: int = 0,
) -> tuple[list[Pair], PairStats]:
    """Build preference pairs from each prompt's scored candidates (see the module docstring).

    Args:
        prompt_keys: one id or key per prompt (e.g. its index or a hash); seeds ``best_random``
            per prompt and is recorded on each pair.
        candidates: ``candidates[i][k]``, the k-th response text of prompt i (K may vary).
        scores: ``scores[i][k]``, the judge's score of that response (higher is better, finite).
        strategy: one of ``best_worst``, ``best_random``, ``best_second``, ``all_pairs``.
        min_margin: smallest score margin a kept pair may have (≥ 0). Margins of 0 are always
            ties and dropped.
        length_penalty: λ ≥ 0; scores become ``score − λ·lengths[i][k]`` before pairing.
        lengths: ``lengths[i][k]``, the response's length in tokens; required when λ > 0.
        seed: seed of the ``best_random`` draws.

    Returns:
        The pairs (ordered by prompt, then by the strategy's order) and their ``PairStats``.

    Raises:
        ConfigError: unknown strategy, or a negative ``min_margin`` / ``length_penalty``.
        DataError: inputs of mismatched sizes, or a non-finite score or length.
        ValueError: ``length_penalty`` > 0 without ``lengths``.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"pairs.strategy: unknown strategy '{strategy}'; use one of {', '.join(STRATEGIES)}")
    if min_margin < 0:
        raise ConfigError(f"pairs.min_margin must be >= 0, got {min_margin}")
    if length_penalty < 0:
        raise ConfigError(f"pairs.length_penalty must be >= 0, got {length_penalty}")
    if length_penalty and lengths is None:
        raise ValueError("length_penalty > 0 needs the candidates' lengths")
    _check_shapes(prompt_keys, candidates, scores, lengths)

    pairs: list[Pair] = []
    duplicates = ties = below_margin = too_few = without_pair = 0
    for p, (key, texts) in enumerate(zip(prompt_keys, candidates)):
        distinct = _first_occurrences(texts)
        duplicates += len(texts) - len(distinct)
        value = {k: _adjusted(scores, lengths, length_penalty, p, k) for k in distinct}
        if len(distinct) < 2:
            too_few += 1
            without_pair += 1
            continue
        found = 0
        for chosen, rejected in _select(strategy, distinct, value, random.Random(f"{seed}/{key}")):
            margin = value[chosen] - value[rejected]
            if margin <= 0:
                ties += 1
            elif margin < min_margin:
                below_margin += 1
            else:
                found += 1
                pairs.append(Pair(p, key, chosen, rejected, texts[chosen], texts[rejected],
                                  value[chosen], value[rejected], margin))
        without_pair += found == 0

    margins = [pair.margin for pair in pairs]
    stats = PairStats(
        prompts=len(candidates),
        pairs=len(pairs),
        duplicates_removed=duplicates,
        ties_dropped=ties,
        below_margin_dropped=below_margin,
        prompts_too_few_candidates=too_few,
        prompts_without_pair=without_pair,
        margin_mean=sum(margins) / len(margins) if margins else None,
        margin_min=min(margins) if margins else None,
        margin_max=max(margins) if margins else None,
    )
    return pairs, stats


def _select(strategy: str, distinct: list[int], value: dict[int, float],
            rng: random.Random) -> list[tuple[int, int]]:
    """Candidate (chosen, rejected) index pairs of one prompt, before the margin filter."""
    ranked = sorted(distinct, key=lambda k: (-value[k], k))  # best first; ties by index
    best = ranked[0]
    if strategy == "best_worst":
        # The first of the lowest-scored candidates, mirroring "first of the highest" for best.
        return [(best, min(distinct, key=lambda k: (value[k], k)))]
    if strategy == "best_second":
        return [(best, ranked[1])]
    if strategy == "best_random":
        return [(best, rng.choice(ranked[1:]))]
    # all_pairs: orient each pair by score; on a tie the orientation is irrelevant (it is dropped).
    return [(a, b) if value[a] >= value[b] else (b, a) for a, b in combinations(distinct, 2)]


def _first_occurrences(texts: Sequence[str]) -> list[int]:
    seen: set[str] = set()
    keep = []
    for k, text in enumerate(texts):
        if text not in seen:
            seen.add(text)
            keep.append(k)
    return keep


def _adjusted(scores: Sequence[Sequence[float]], lengths: Sequence[Sequence[int]] | None,
              length_penalty: float, p: int, k: int) -> float:
    if not length_penalty:
        return float(scores[p][k])
    return float(scores[p][k]) - length_penalty * float(lengths[p][k])  # type: ignore[index]


def _check_shapes(prompt_keys: Sequence[Hashable], candidates: Sequence[Sequence[str]],
                  scores: Sequence[Sequence[float]], lengths: Sequence[Sequence[int]] | None) -> None:
    if not len(prompt_keys) == len(candidates) == len(scores):
        raise DataError(f"pairs: {len(prompt_keys)} prompt keys, {len(candidates)} candidate lists and "
                        f"{len(scores)} score lists; they must match")
    if lengths is not None and len(lengths) != len(candidates):
        raise DataError(f"pairs: {len(lengths)} length lists for {len(candidates)} prompts")
    for p, texts in enumerate(candidates):
        columns = {"scores": scores[p]} if lengths is None else {"scores": scores[p], "lengths": lengths[p]}
        for name, column in columns.items():
            if len(column) != len(texts):
                raise DataError(f"pairs: prompt {p} has {len(texts)} candidates but {len(column)} {name}")
            for k, number in enumerate(column):
                if not _is_finite_number(number):
                    raise DataError(f"pairs: prompt {p}, candidate {k}: {name[:-1]} {number!r} is not a finite number")


def _is_finite_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(value)


def split_by_score_gap(gaps: Sequence[float], quantile: float) -> tuple[list[int], list[int]]:
    """MPO's data split (Gou & Nguyen 2024, arXiv 2403.19443): easy pairs for DPO, difficult ones for PPO.

    MPO scores each pair with a reward model and calls pairs with a large reward gap *easy* (DPO
    trains on them first) and pairs with a small gap *difficult* (PPO then trains on their prompts,
    with the DPO model as reference). The threshold is the ``quantile`` of the gaps, not a fixed
    value, so it does not depend on the judge's scale: a pair is easy iff its gap is strictly above
    τ, the quantile computed as numpy's default (linear interpolation between order statistics:
    h = (n − 1)·q, τ = g_(⌊h⌋) + (h − ⌊h⌋)·(g_(⌊h⌋+1) − g_(⌊h⌋)) over the sorted gaps g). So about a
    fraction ``quantile`` of the pairs is difficult, and ties at τ are difficult: equal gaps always
    land in the same set.

    Gaps are signed. A negative gap (the judge prefers the labelled rejected response) is among the
    smallest and lands in the difficult set: its label is the doubtful one DPO should not fit, and
    PPO uses only its prompt. ``quantile`` = 1 makes every pair difficult; ``quantile`` = 0 leaves
    only the pairs at the smallest gap difficult.

    Args:
        gaps: [P] judge score of chosen − rejected per pair, judge units (``Pair.margin``); finite.
        quantile: q in [0, 1], the fraction of pairs (by gap) that is difficult.

    Returns:
        (easy, difficult): pair positions, each ascending; together every position once.

    Raises:
        ConfigError: ``quantile`` outside [0, 1].
        DataError: a non-finite gap.
    """
    if not 0 <= quantile <= 1:
        raise ConfigError(f"pairs.gap_quantile must be in [0, 1], got {quantile}")
    for i, gap in enumerate(gaps):
        if not _is_finite_number(gap):
            raise DataError(f"pairs: pair {i}: score gap {gap!r} is not a finite number")
    if not gaps:
        return [], []
    threshold = _linear_quantile(sorted(float(g) for g in gaps), quantile)
    easy = [i for i, gap in enumerate(gaps) if gap > threshold]
    difficult = [i for i, gap in enumerate(gaps) if gap <= threshold]
    return easy, difficult


def _linear_quantile(ordered: list[float], q: float) -> float:
    h = (len(ordered) - 1) * q
    low = math.floor(h)
    if low + 1 >= len(ordered):
        return ordered[low]
    return ordered[low] + (h - low) * (ordered[low + 1] - ordered[low])
