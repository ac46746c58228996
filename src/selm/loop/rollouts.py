"""Judged samples → the round's rollouts: DAPO's informative groups, PF-PPO's filter, overlong shaping,
and (GFlowNet fine-tuning) the judge's reward of every prefix of each kept response.

The phase order and the rules themselves are ``selm.loop.rollout_rules``; this module applies them
to a round's artifacts and makes the trainer's examples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from selm.artifacts import Prompt, RolloutRow, SampleRow
from selm.data.rollouts import TokenizedRollout
from selm.eval import keys
from selm.loop.rollout_rules import RolloutRules, filter_rollouts, overlong_penalty


def rollout_rows(rules: RolloutRules, samples: Sequence[SampleRow], scores: Sequence[Sequence[float]],
                 max_new_tokens: int, seed: int, vectors: Sequence[Sequence[Sequence[float]]] | None = None
                 ) -> tuple[list[RolloutRow], dict[str, Any]]:
    """One row per kept sampled candidate, grouped by prompt (the group is the prompt's place in
    ``samples``), with the judge's reward plus the overlong penalty.

    Args:
        rules: the run's ``rollouts`` section.
        samples: the round's sample rows (after dynamic sampling, if on).
        scores: ``scores[p][j]``, the judge's reward of candidate j of prompt p, reward units.
        max_new_tokens: the sampler's token budget (the overlong ramp ends there).
        seed: the round's filter seed.
        vectors: ``vectors[p][j]``, a ``vector`` judge's rewards [K] of candidate j of prompt p.

    Returns:
        (rows, stats): the rollouts, and ``rollouts/…`` counts for the round's metrics.
    """
    kept = filter_rollouts([list(s) for s in scores], rules.filter, seed,
                           prompt_keys=[f"{i}/{s.prompt_index}" for i, s in enumerate(samples)])
    rows = []
    for group, (sample, rewards, keep) in enumerate(zip(samples, scores, kept)):
        for j in keep:
            candidate = sample.candidates[j]
            reward = float(rewards[j])
            if rules.overlong_cache_length:
                reward += overlong_penalty(candidate.num_tokens, max_new_tokens, rules.overlong_cache_length,
                                           rules.overlong_penalty_factor)
            rows.append(RolloutRow(group, j, sample.prompt_ids, candidate.token_ids, reward, candidate.token_logprobs,
                                   list(vectors[group][j]) if vectors is not None else None))
    stats = {keys.ROLLOUTS_COUNT: len(rows), "rollouts/prompts": len(samples),
             "rollouts/kept_fraction": len(rows) / max(1, sum(len(s) for s in scores))}
    return rows, stats


def with_prefix_rewards(rows: Sequence[RolloutRow], prompts: Sequence[Prompt], tokenizer: Any,
                        score: Callable[[list[Prompt], list[str]], list[float]]) -> list[RolloutRow]:
    """``rows`` with ``prefix_rewards``: the judge's score of every prefix y_<t of each response,
    t = 0..|y|−1 (the empty response first), judged as a complete response.

    A prefix is the response's first t sampled tokens decoded as the sampler decodes a response
    (special tokens dropped), so the last prefix of a response that ended in EOS is the response
    itself. This is |y| judge calls per response instead of one: a round judges Σ|y| texts (up to
    ``sampling.max_new_tokens`` times the kept samples), in one ``score`` call.

    Args:
        rows: the round's rollouts.
        prompts: each row's prompt (as the judge reads it).
        tokenizer: the policy's tokenizer.
        score: a pointwise judge's batch ``score(prompts, responses)`` -> one reward each, reward
            units (the caller shards it over the processes).

    Returns:
        The rows in order, each with ``len(token_ids)`` prefix rewards.
    """
    prefixes = [tokenizer.batch_decode([r.token_ids[:t] for t in range(len(r.token_ids))], skip_special_tokens=True)
                for r in rows]
    flat = iter(score([p for p, texts in zip(prompts, prefixes) for _ in texts],
                      [text for texts in prefixes for text in texts]))
    return [replace(r, prefix_rewards=[float(next(flat)) for _ in texts]) for r, texts in zip(rows, prefixes)]


def tokenized_rollouts(rows: Sequence[RolloutRow]) -> list[TokenizedRollout]:
    """The trainer's examples: the sampled token ids themselves, the recorded log-probs and the
    prefix rewards where judged."""
    return [TokenizedRollout(i, r.prompt_ids, r.token_ids, r.reward, r.prompt_index, r.token_logprobs, r.reward_vector,
                             r.prefix_rewards)
            for i, r in enumerate(rows)]
