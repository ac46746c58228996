"""Judged rollouts → the ones an RL round trains on, and the length shaping of their rewards.

Each rule is a pure function of the judge's rewards (or of a response's length); the round loop
draws the samples and calls them.

**Policy filtration** (PF-PPO, Zhang et al., ICML 2025, arXiv 2409.06957 §4). Per prompt, the N
responses are ranked by reward, y_1 ≥ … ≥ y_N, and the filtered policy μ_θ returns rank i with
probability w_i; PPO then trains on the kept responses as if μ_θ had sampled them:

- ``best_of_n``: w = (1, 0, …, 0), the best only;
- ``best_random``: w = (½, 1/(2(N−1)), …, 1/(2(N−1))), the best or a uniformly drawn other;
- ``best_worst``: w = (½, 0, …, 0, ½), the best or the worst;
- ``none``: every response (the paper's PPO-M baseline).

The paper trains on "2 out of the N = 5 responses (on average)" (Table 6) rather than on one
categorical draw. ``filter_group`` keeps one draw from each half of the mixture: the best, plus the
worst (``best_worst``) or one other drawn uniformly from the N − 1 others (``best_random``). Each
kept response then has weight ½, so the kept set is w exactly for BoN and BW and in expectation
for BR. (The authors' verl branch instead resamples the whole batch with replacement by
batch-global weights, after the advantages; this module follows the per-prompt method of the
paper.) Ties in the ranking go by position in the group, earlier first: the best is the first of
the top rewards and the worst is the last of the bottom rewards, so for N ≥ 2 they are two
distinct responses even when every reward ties, as y_1 and y_N are in the paper.

**Dynamic sampling** (DAPO, Yu et al. 2025, arXiv 2503.14476 §3.2, Eq. 11). A prompt whose
responses all got the same reward has a group-relative advantage of 0 for every response, so it
contributes no gradient; DAPO drops such groups and keeps sampling prompts until the batch is
full. ``informative_groups`` marks the groups to keep, ``DynamicSampling`` plans the extra draws.

**Soft overlong punishment** (DAPO §3.4, Eq. 13): ``overlong_penalty``, added to the judge's
reward of a response that runs into the last ``cache_length`` tokens before ``max_length``.

Order in a round: judge → ``informative_groups`` (on the judge's rewards: DAPO filters on
correctness, not on the shaped reward) → more draws while ``DynamicSampling.needs_more`` →
``filter_rollouts`` (ranks by the judge's reward, whose reliability PF-PPO is about) → add
``overlong_penalty`` → advantages.
"""

from __future__ import annotations

import math
import numbers
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import Field

from selm.config import StrictModel
from selm.errors import ConfigError, DataError

Filter = Literal["none", "best_of_n", "best_random", "best_worst"]
FILTERS: tuple[str, ...] = get_args(Filter)


class RolloutRules(StrictModel):
    """Which judged rollouts an RL round trains on (PF-PPO, DAPO) and the length shaping of rewards."""

    filter: Filter = Field(
        "none", description="PF-PPO policy filtration per prompt: none (train on all), best_of_n (the best), "
                            "best_random (the best and a random other), best_worst (the best and the worst)")
    dynamic_sampling: bool = Field(
        False, description="DAPO: drop prompts whose responses all got the same reward and draw more prompts "
                           "until prompts.per_round informative ones are kept")
    max_resample_rounds: int = Field(
        3, ge=0, description="most extra prompt draws per round for dynamic sampling; when they are spent the "
                             "round trains on the informative prompts it has (verl's max_num_gen_batches − 1)")
    overlong_cache_length: int = Field(
        0, ge=0, description="DAPO soft overlong punishment: L_cache, tokens before sampling.max_new_tokens "
                             "over which the length penalty ramps from 0 to −overlong_penalty_factor; 0 = off")
    overlong_penalty_factor: float = Field(
        1.0, ge=0, description="reward units at the end of the overlong ramp (DAPO: 1 on ±1 correctness "
                               "rewards; verl's overlong_buffer.penalty_factor)")


def filter_group(rewards: Sequence[float], strategy: str, rng: random.Random) -> list[int]:
    """PF-PPO's filtration of one prompt's responses (see the module docstring).

    Args:
        rewards: the judge's reward of each of the prompt's N responses, reward units; finite.
        strategy: one of ``none``, ``best_of_n``, ``best_random``, ``best_worst``.
        rng: draws the other response of ``best_random`` (the only randomness).

    Returns:
        The positions (into ``rewards``) of the responses to train on, ascending: all N for
        ``none``, 1 for ``best_of_n``, 2 for ``best_random`` / ``best_worst``; none for N = 0.

    Raises:
        ConfigError: an unknown strategy.
        DataError: a non-finite reward, or ``best_random`` / ``best_worst`` with N = 1.
    """
    _check_strategy(strategy)
    _check_group(rewards, strategy, "")
    return _keep(rewards, strategy, rng)


def filter_rollouts(rewards_per_prompt: Sequence[Sequence[float]], strategy: str, seed: int,
                    prompt_keys: Sequence[Hashable] | None = None) -> list[list[int]]:
    """``filter_group`` for every prompt, reproducibly.

    Prompt p's generator is seeded by ``(seed, prompt_keys[p])`` (by ``(seed, p)`` without keys),
    so a prompt's draw does not depend on which other prompts are present.

    Args:
        rewards_per_prompt: ``rewards_per_prompt[p][k]``, the judge's reward of response k to
            prompt p, reward units; N may vary between prompts.
        strategy: as in ``filter_group``.
        seed: seed of the ``best_random`` draws.
        prompt_keys: one id per prompt (e.g. its key in the prompt file); default: the positions.

    Returns:
        ``kept[p]``: the positions of prompt p's responses to train on, ascending.

    Raises:
        ConfigError: an unknown strategy.
        DataError: as in ``filter_group`` (naming the prompt), or keys and prompts of different counts.
    """
    _check_strategy(strategy)
    keys = range(len(rewards_per_prompt)) if prompt_keys is None else prompt_keys
    if len(keys) != len(rewards_per_prompt):
        raise DataError(f"rollouts: {len(keys)} prompt keys for {len(rewards_per_prompt)} prompts")
    for p, rewards in enumerate(rewards_per_prompt):
        _check_group(rewards, strategy, f"prompt {p}: ")
    return [_keep(rewards, strategy, random.Random(f"{seed}/{key}"))
            for key, rewards in zip(keys, rewards_per_prompt)]


def informative_groups(rewards_per_prompt: Sequence[Sequence[float]]) -> list[bool]:
    """DAPO's dynamic-sampling filter: False for a prompt whose responses all got the same reward.

    Equality is exact, on purpose. Such a group is exactly what makes every group-relative
    advantage (GRPO, RLOO, Dr. GRPO) exactly 0 in ``selm.objectives.advantages``, which subtracts
    the group minimum first for that reason; any difference at all gives nonzero advantages. A
    tolerance would be a number in the judge's units that no paper gives, and would drop groups
    that still carry a gradient. A spread test such as verl's ``np.std(r) > 0`` can be fooled by
    rounding: the mean of three 0.1s is 0.10000000000000002, so their std is 1.4e-17, not 0.

    A group of one response is kept, as verl does: there is nothing to compare, and dropping it
    would drop every prompt when ``sampling.n`` is 1. A group of none is dropped.

    Args:
        rewards_per_prompt: ``rewards_per_prompt[p][k]``, the judge's reward (before any length
            shaping) of response k to prompt p; finite.

    Returns:
        One flag per prompt: True if its group can give a gradient.

    Raises:
        DataError: a non-finite reward.
    """
    for p, rewards in enumerate(rewards_per_prompt):
        _check_finite(rewards, f"prompt {p}: ")
    return [len(rewards) == 1 or any(r != rewards[0] for r in rewards[1:]) for rewards in rewards_per_prompt]


@dataclass(frozen=True)
class DynamicSampling:
    """The bookkeeping of DAPO's resampling within one round (the loop draws and judges).

    The round first draws ``target`` prompts. While ``needs_more``, it draws ``next_draw`` more,
    judges them and counts the informative groups (``informative_groups``). It then trains on the
    first ``target`` informative groups in draw order, or on all it has when the extra draws are
    spent (verl raises an error there instead).

    Attributes:
        target: informative prompts wanted (the round's ``prompts.per_round``), ≥ 1.
        max_rounds: extra draws allowed after the first (``max_resample_rounds``), ≥ 0.
    """

    target: int
    max_rounds: int

    def __post_init__(self) -> None:
        if self.target < 1:
            raise ConfigError(f"prompts.per_round must be >= 1 for dynamic sampling, got {self.target}")
        if self.max_rounds < 0:
            raise ConfigError(f"rollouts.max_resample_rounds must be >= 0, got {self.max_rounds}")

    def needs_more(self, kept: int, rounds_done: int) -> bool:
        """True while fewer than ``target`` groups are informative and an extra draw is left.

        Args:
            kept: informative groups so far.
            rounds_done: extra draws made so far (0 after the first draw).
        """
        return kept < self.target and rounds_done < self.max_rounds

    def next_draw(self, kept: int, drawn: int) -> int:
        """Prompts to draw next: the missing groups ÷ the informative fraction so far, at most ``target``.

        Scaling by the fraction seen (kept / drawn) aims to fill the batch in one more draw; the cap
        keeps every extra draw at most as costly as the first, so a round samples at most
        ``(1 + max_rounds) · target`` prompts. With nothing kept yet the fraction is unknown and a
        full ``target`` is drawn. 0 when nothing is missing.

        Args:
            kept: informative groups so far (≤ ``drawn``).
            drawn: prompts drawn so far, the first draw included.

        Raises:
            ValueError: ``kept`` < 0 or ``kept`` > ``drawn``.
        """
        if not 0 <= kept <= drawn:
            raise ValueError(f"DynamicSampling.next_draw: need 0 <= kept <= drawn, got kept={kept}, drawn={drawn}")
        missing = self.target - kept
        if missing <= 0:
            return 0
        if kept == 0:
            return self.target
        return min(self.target, -(-missing * drawn // kept))  # integer ceil(missing · drawn / kept)


def overlong_penalty(length: int, max_length: int, cache_length: int, factor: float = 1.0) -> float:
    """DAPO's soft overlong punishment (Eq. 13), times ``factor``, in reward units.

    With L = ``max_length`` and C = ``cache_length`` (tokens), a response of |y| tokens gets

        0                        if |y| ≤ L − C
        factor · ((L − C) − |y|) / C    if L − C < |y| ≤ L    (linear from 0 down to −factor)
        −factor                  if |y| > L

    to be added to the judge's reward. DAPO uses L = 20480 (its generation limit), C = 4096 and
    factor 1 against ±1 correctness rewards. In selm, L is ``sampling.max_new_tokens``, so a response
    cut off at the limit gets −factor and the last case is reached only with a smaller L.

    Args:
        length: |y|, the response's tokens (EOS included, as counted against ``max_new_tokens``), ≥ 0.
        max_length: L, tokens, ≥ 1.
        cache_length: C, tokens, 1 ≤ C ≤ L.
        factor: the penalty at L, reward units, ≥ 0 (verl's ``penalty_factor``; 1 in the paper).

    Raises:
        ConfigError: C outside [1, L], or a negative factor.
        ValueError: a negative length or L < 1.
    """
    if length < 0 or max_length < 1:
        raise ValueError(f"overlong_penalty: need length >= 0 and max_length >= 1, got {length} and {max_length}")
    if not 1 <= cache_length <= max_length:
        raise ConfigError(f"rollouts.overlong_cache_length must be in [1, {max_length}] (the response limit), "
                          f"got {cache_length}")
    if factor < 0:
        raise ConfigError(f"rollouts.overlong_penalty_factor must be >= 0, got {factor}")
    expected = max_length - cache_length
    if length <= expected:
        return 0.0
    if length <= max_length:
        return factor * (expected - length) / cache_length
    return -float(factor)


def _keep(rewards: Sequence[float], strategy: str, rng: random.Random) -> list[int]:
    """The kept positions of one checked group (see ``filter_group``)."""
    if strategy == "none" or not rewards:
        return list(range(len(rewards)))
    ranked = sorted(range(len(rewards)), key=lambda k: (-rewards[k], k))  # best first; ties by position
    if strategy == "best_of_n":
        return [ranked[0]]
    other = ranked[-1] if strategy == "best_worst" else rng.choice(ranked[1:])
    return sorted((ranked[0], other))


def _check_strategy(strategy: str) -> None:
    if strategy not in FILTERS:
        raise ConfigError(f"rollouts.filter: unknown filter '{strategy}'; use one of {', '.join(FILTERS)}")


def _check_group(rewards: Sequence[float], strategy: str, where: str) -> None:
    _check_finite(rewards, where)
    if len(rewards) == 1 and strategy in ("best_random", "best_worst"):
        raise DataError(f"rollouts: {where}the filter {strategy} needs at least 2 responses per prompt "
                        f"(sampling.n), got 1")


def _check_finite(rewards: Sequence[float], where: str) -> None:
    for k, reward in enumerate(rewards):
        if not (isinstance(reward, numbers.Real) and math.isfinite(reward)):
            raise DataError(f"rollouts: {where}response {k}: reward {reward!r} is not a finite number")
