"""The ``lock`` task: the best answer is rare, far from the greedy one, and nothing points toward it.

Prompt ``"lock: 3 8 1 =>"``; the key is its last digit written once per digit, ``" 1 1 1"`` (then
EOS). The gold reward is 1.0 for the exact key, 0.3 for an exact copy of the digits (the decoy) and
0 for anything else: a key with one digit wrong earns nothing, so no reward difference leads
toward the key step by step. The starting model is trained on demonstrations that copy the digits
(one digit wrong 20 % of the time) and give the key 5 % of the time: its greedy answer is the copy,
which differs from the key wherever a digit differs from the last one (from the first token on,
nine times in ten), and a key is about one sample in a hundred (the tiny model learns the rare mode
less often than it is shown: 1.2 % of π0's samples; with 1 % key demonstrations it gave the key
1e-4 of its mass, and with keys that shift every digit by five, 1e-5).

Preference training on the policy's own samples meets two pulls here: pairs of a copy against a
broken copy (most prompts) sharpen the decoy, and only the rare prompt whose samples hold a key
gives a pair toward the goal. Unlike ``echo`` (whose copy earns per-digit partial credit and whose
high-reward answer is the greedy one plus one token) and ``sort`` (partial credit for every digit
in place), only exploration finds this task's best answers.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from selm.errors import DataError
from selm.tasks.base import Task
from selm.tasks.registry import register_task

MIN_DIGITS, MAX_DIGITS = 3, 5
# How often a demonstration is the key: about the starting policy's rate of high-reward answers.
DEMO_KEY_RATE = 0.05
DEMO_ERROR_RATE = 0.2
R_KEY, R_COPY = 1.0, 0.3
_PROMPT_RE = re.compile(r"^lock:((?: [0-9])+) =>$")


def format_prompt(digits: Sequence[int]) -> str:
    """``[3, 8, 1]`` -> ``"lock: 3 8 1 =>"``."""
    return "lock: " + " ".join(str(d) for d in digits) + " =>"


def format_response(digits: Sequence[int]) -> str:
    """``[8, 3, 6]`` -> ``" 8 3 6"`` (leading space: responses are appended to the prompt)."""
    return "".join(f" {d}" for d in digits)


def parse_prompt(prompt: str) -> list[int]:
    """The digits of a lock prompt, in order; a malformed prompt is a DataError."""
    match = _PROMPT_RE.match(prompt)
    if match is None:
        raise DataError(f"not a lock prompt (expected 'lock: 3 8 1 =>'): {prompt!r}")
    return [int(tok) for tok in match.group(1).split()]


def key(digits: Sequence[int]) -> list[int]:
    """The last digit, once per digit: ``[3, 8, 1]`` -> ``[1, 1, 1]``."""
    return [digits[-1]] * len(digits)


def lock_reward(digits: Sequence[int], response: str) -> float:
    """Gold reward of ``response`` for the lock ``digits``: 1.0 for the key, 0.3 for a copy, else 0.

    Both are compared item by item after splitting on whitespace, so spacing does not matter but
    every item must match: there is no partial credit.
    """
    items = response.split()
    if items == [str(d) for d in key(digits)]:
        return R_KEY
    return R_COPY if items == [str(d) for d in digits] else 0.0


@register_task
class LockTask(Task):
    """Answer 3–5 digits (repeats allowed) with the last one repeated; see the module docstring.
    Prompts are plain text (no chat template, no BOS), like ``sort`` and ``echo``."""

    name = "lock"
    # Bump when prompts, demonstrations or the reward change: it is part of the model cache key.
    version = 1
    max_new_tokens = 8  # up to 5 digits + EOS, with slack
    stop_strings = ("\n",)
    eval_pool_size = 500

    def sample_prompt(self, rng: random.Random) -> str:
        k = rng.randint(MIN_DIGITS, MAX_DIGITS)
        return format_prompt([rng.randrange(10) for _ in range(k)])

    def gold_reward(self, prompts: list[str], responses: list[str]) -> list[float]:
        self._check_pairs(prompts, responses)
        return [lock_reward(parse_prompt(p), r) for p, r in zip(prompts, responses)]

    def reference_responses(self, prompts: list[str]) -> list[str]:
        return [format_response(key(parse_prompt(p))) for p in prompts]

    def demonstration(self, prompt: str, rng: random.Random) -> str:
        """With probability 0.01 the key; otherwise the prompt's digits, one of them replaced by
        another digit with probability 0.2."""
        digits = parse_prompt(prompt)
        if rng.random() < DEMO_KEY_RATE:
            return format_response(key(digits))
        if rng.random() < DEMO_ERROR_RATE:
            i = rng.randrange(len(digits))
            digits[i] = rng.choice([d for d in range(10) if d != digits[i]])
        return format_response(digits)
