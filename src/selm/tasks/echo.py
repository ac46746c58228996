"""The ``echo`` task: copy a list of digits, and close it with a mark the demonstrations rarely use.

Prompt ``"echo: 7 2 7 4 =>"``, ideal response ``" 7 2 7 4 !"`` (then EOS). The gold reward pays
0.4 for an exact copy and 1.0 for an exact copy closed by ``" !"``. The starting model is trained on
demonstrations that copy the digits (one digit wrong 20 % of the time) and append the mark only 1 %
of the time: it copies well, but a high-reward response (≥ 0.8 needs the mark) is one sample in a
hundred. Preference training on the policy's own samples can only reach it if sampling finds the
mark and the update makes it more likely: this is the built-in task where exploration is needed,
unlike ``sort``, whose partial credit rewards every step toward the goal.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from selm.errors import DataError
from selm.tasks.base import Task
from selm.tasks.registry import register_task

MIN_DIGITS, MAX_DIGITS = 3, 6
MARK = "!"
# How often a demonstration carries the mark: the starting policy's rate of high-reward answers.
DEMO_MARK_RATE = 0.01
DEMO_ERROR_RATE = 0.2
# An exact copy without the mark earns W_COPY; with the mark, W_COPY + W_MARK = 1.
W_COPY, W_MARK = 0.4, 0.6
_PROMPT_RE = re.compile(r"^echo:((?: [0-9])+) =>$")


def format_prompt(digits: Sequence[int]) -> str:
    """``[7, 2, 7]`` -> ``"echo: 7 2 7 =>"``."""
    return "echo: " + " ".join(str(d) for d in digits) + " =>"


def parse_prompt(prompt: str) -> list[int]:
    """The digits of an echo prompt, in order; a malformed prompt is a DataError."""
    match = _PROMPT_RE.match(prompt)
    if match is None:
        raise DataError(f"not an echo prompt (expected 'echo: 7 2 7 =>'): {prompt!r}")
    return [int(tok) for tok in match.group(1).split()]


def echo_reward(digits: Sequence[int], response: str) -> float:
    """Gold reward in [0, 1] of ``response`` for echoing ``digits``; 1.0 only for the copy plus mark.

    The response is split on whitespace; ``marked`` says whether the last item is ``"!"`` (that
    item is then removed). With ``items`` the rest and L = max(#items, #digits):

        copy   = #{i : items_i == str(digits_i)} / L
        reward = copy · (0.4 + 0.6 · marked)

    The mark counts only on top of the copy, so ``" !"`` alone scores 0.
    """
    items = response.split()
    marked = bool(items) and items[-1] == MARK
    if marked:
        items = items[:-1]
    length = max(len(items), len(digits))
    if length == 0:
        return 0.0
    copy = sum(item == str(d) for item, d in zip(items, digits)) / length
    return copy * (W_COPY + W_MARK * marked)


@register_task
class EchoTask(Task):
    """Echo 3–6 digits (repeats allowed) and close with ``" !"``; see the module docstring.
    Prompts are plain text (no chat template, no BOS), like ``sort``."""

    name = "echo"
    # Bump when prompts, demonstrations or the reward change: it is part of the model cache key.
    version = 1
    max_new_tokens = 10  # up to 6 digits + the mark + EOS, with slack
    stop_strings = ("\n",)

    def sample_prompt(self, rng: random.Random) -> str:
        k = rng.randint(MIN_DIGITS, MAX_DIGITS)
        return format_prompt([rng.randrange(10) for _ in range(k)])

    def gold_reward(self, prompts: list[str], responses: list[str]) -> list[float]:
        self._check_pairs(prompts, responses)
        return [echo_reward(parse_prompt(p), r) for p, r in zip(prompts, responses)]

    def reference_responses(self, prompts: list[str]) -> list[str]:
        return ["".join(f" {d}" for d in parse_prompt(p)) + f" {MARK}" for p in prompts]

    def demonstration(self, prompt: str, rng: random.Random) -> str:
        """The prompt's digits; with probability 0.2 one is replaced by another digit, and with
        probability 0.01 the mark is appended."""
        digits = parse_prompt(prompt)
        if rng.random() < DEMO_ERROR_RATE:
            i = rng.randrange(len(digits))
            digits[i] = rng.choice([d for d in range(10) if d != digits[i]])
        mark = f" {MARK}" if rng.random() < DEMO_MARK_RATE else ""
        return "".join(f" {d}" for d in digits) + mark
