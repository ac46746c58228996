"""The ``sort`` task: sort a short list of distinct digits.

Prompt ``"sort: 7 2 9 4 =>"``, ideal response ``" 2 4 7 9"`` (then EOS). The starting model is
trained on demonstrations that are random permutations of the prompt's digits, sometimes with one
wrong digit: it knows the format but emits the sorted order only by chance (1/k! for k digits,
about 5% over lengths 3–6), so good responses are rare and the optimiser has to find them.
Sorting is still easy to learn from preferences: the starting policy already spreads its mass over
the digits not yet written, and a bias toward smaller digits turns that into "smallest remaining".
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence

from selm.errors import DataError
from selm.tasks.base import Task
from selm.tasks.registry import register_task

MIN_DIGITS, MAX_DIGITS = 3, 6
_PROMPT_RE = re.compile(r"^sort:((?: [0-9])+) =>$")

# Reward weights (sum to 1): the order terms dominate, because the starting policy already gets
# the multiset right and the goal is the order.
W_MULTISET, W_POSITION, W_ORDER = 0.2, 0.4, 0.4


def format_prompt(digits: Sequence[int]) -> str:
    """``[7, 2, 9]`` -> ``"sort: 7 2 9 =>"``."""
    return "sort: " + " ".join(str(d) for d in digits) + " =>"


def format_response(digits: Sequence[int]) -> str:
    """``[2, 7, 9]`` -> ``" 2 7 9"`` (leading space: responses are appended to the prompt)."""
    return "".join(f" {d}" for d in digits)


def parse_prompt(prompt: str) -> list[int]:
    """The digits of a sort prompt, in prompt order; a malformed prompt is a DataError."""
    match = _PROMPT_RE.match(prompt)
    if match is None:
        raise DataError(f"not a sort prompt (expected 'sort: 7 2 9 =>'): {prompt!r}")
    return [int(tok) for tok in match.group(1).split()]


def sort_reward(digits: Sequence[int], response: str) -> float:
    """Gold reward in [0, 1] of ``response`` for sorting ``digits``; 1.0 only for the sorted list.

    The response is split on whitespace; an item that is not a single digit is junk: it matches
    nothing and no pair containing it is in order. With L = max(#items, #digits):

        multiset = |items ∩ digits (as multisets)| / L
        position = #{i : item_i == sorted(digits)_i} / L
        order    = multiset · (fraction of item pairs i < j with item_i ≤ item_j; 1 if < 2 items)
        reward   = 0.2 · multiset + 0.4 · position + 0.4 · order

    ``order`` is scaled by ``multiset`` so that a sorted list of the wrong digits earns little.
    An empty or all-junk response scores 0.
    """
    items = response.split()
    if not items:
        return 0.0
    values = [int(tok) if len(tok) == 1 and tok.isdigit() else None for tok in items]
    target = sorted(digits)
    length = max(len(items), len(target))
    valid = Counter(v for v in values if v is not None)
    multiset = sum((valid & Counter(target)).values()) / length
    position = sum(v == t for v, t in zip(values, target)) / length
    pairs = [(a, b) for i, a in enumerate(values) for b in values[i + 1:]]
    in_order = sum(a is not None and b is not None and a <= b for a, b in pairs)
    order = multiset * (in_order / len(pairs) if pairs else 1.0)
    return W_MULTISET * multiset + W_POSITION * position + W_ORDER * order


@register_task
class SortTask(Task):
    """Sort 3–6 distinct digits; see the module docstring. Prompts are plain text (no chat
    template, no BOS): feed ``tokenizer(prompt).input_ids`` to the model as is."""

    name = "sort"
    # Bump when prompts, demonstrations or the reward change: it is part of the model cache key.
    version = 1
    max_new_tokens = 10  # up to 6 digit tokens + EOS, with slack for rambling policies
    stop_strings = ("\n",)

    def sample_prompt(self, rng: random.Random) -> str:
        k = rng.randint(MIN_DIGITS, MAX_DIGITS)
        return format_prompt(rng.sample(range(10), k))

    def gold_reward(self, prompts: list[str], responses: list[str]) -> list[float]:
        self._check_pairs(prompts, responses)
        return [sort_reward(parse_prompt(p), r) for p, r in zip(prompts, responses)]

    def reference_responses(self, prompts: list[str]) -> list[str]:
        return [format_response(sorted(parse_prompt(p))) for p in prompts]

    def demonstration(self, prompt: str, rng: random.Random) -> str:
        """A random permutation of the prompt's digits; with probability 0.1 one of them is
        replaced by a digit absent from the prompt (so the starting policy also makes mistakes
        that preference training can remove)."""
        digits = parse_prompt(prompt)
        rng.shuffle(digits)
        if rng.random() < 0.1:
            digits[rng.randrange(len(digits))] = rng.choice([d for d in range(10) if d not in digits])
        return format_response(digits)
