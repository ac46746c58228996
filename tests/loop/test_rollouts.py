"""A round's judged samples → rollouts.jsonl rows: groups, the filter, overlong shaping, reward vectors,
prefix rewards."""

from dataclasses import replace

import pytest

from selm.artifacts import Candidate, SampleRow
from selm.data import TokenizedRollout
from selm.loop.rollout_rules import RolloutRules
from selm.loop.rollouts import rollout_rows, tokenized_rollouts, with_prefix_rewards


def sample(index, lengths):
    return SampleRow(index, f"p{index}", [1, 2], [
        Candidate(text="x", token_ids=list(range(3, 3 + n)), logprob=-1.0, num_tokens=n, finished=True,
                  token_logprobs=[-0.5] * n) for n in lengths], None)


SAMPLES = [sample(10, [2, 5, 8]), sample(11, [1, 1, 1])]
SCORES = [[0.2, 0.9, 0.5], [0.3, 0.3, 0.1]]


def test_every_candidate_is_a_rollout_of_its_prompt_s_group_by_default():
    rows, stats = rollout_rows(RolloutRules(), SAMPLES, SCORES, max_new_tokens=8, seed=0)
    assert [(r.prompt_index, r.candidate_index, r.reward) for r in rows] == [
        (0, 0, 0.2), (0, 1, 0.9), (0, 2, 0.5), (1, 0, 0.3), (1, 1, 0.3), (1, 2, 0.1)]
    assert stats == {"rollouts/count": 6, "rollouts/prompts": 2, "rollouts/kept_fraction": 1.0}
    examples = tokenized_rollouts(rows)
    assert [e.group for e in examples] == [0, 0, 0, 1, 1, 1] and examples[2].response_ids == list(range(3, 11))
    assert examples[0].sampling_token_logps == [-0.5, -0.5]


def test_best_worst_keeps_two_per_prompt_and_overlong_responses_lose_reward():
    rules = RolloutRules(filter="best_worst", overlong_cache_length=4)
    rows, stats = rollout_rows(rules, SAMPLES, SCORES, max_new_tokens=8, seed=0)
    kept = {(r.prompt_index, r.candidate_index): r.reward for r in rows}
    # Prompt 0: best 0.9 (5 tokens: 1 past L_max − L_c = 4, −1/4), worst 0.2 (2 tokens, no penalty).
    # Prompt 1: ties go by position: best is the first 0.3, worst the last (0.1).
    assert kept == {(0, 1): pytest.approx(0.9 - 0.25), (0, 0): 0.2, (1, 0): 0.3, (1, 2): 0.1}
    assert stats["rollouts/kept_fraction"] == pytest.approx(4 / 6)


def test_reward_vectors_follow_their_candidates():
    vectors = [[[0.1, 1.0], [0.2, 2.0], [0.3, 3.0]], [[0.4, 4.0], [0.5, 5.0], [0.6, 6.0]]]
    rows, _ = rollout_rows(RolloutRules(filter="best_of_n"), SAMPLES, SCORES, 8, 0, vectors)
    assert [r.reward_vector for r in rows] == [[0.2, 2.0], [0.4, 4.0]]


class CharTokenizer:
    """Token t is the character chr(ord('a') + t − 3); 2 is EOS (a special token)."""

    def batch_decode(self, sequences, skip_special_tokens):
        assert skip_special_tokens  # decoded as the sampler decodes a response
        return ["".join(chr(ord("a") + t - 3) for t in ids if t != 2) for ids in sequences]


def test_every_prefix_is_judged_once_in_one_batch_as_a_complete_response():
    rows, _ = rollout_rows(RolloutRules(filter="best_of_n"), SAMPLES, SCORES, 8, 0)
    # Prompt 0's best has tokens 3..7 ("abcde"); prompt 1's best ends in EOS: [3, 2] → "a".
    rows[1] = replace(rows[1], token_ids=[3, 2], token_logprobs=None)
    calls = []

    def score(prompts, responses):
        calls.append(list(zip(prompts, responses)))
        return [len(r) + (10 if p == "p11" else 0) for p, r in zip(prompts, responses)]

    judged = with_prefix_rewards(rows, ["p10", "p11"], CharTokenizer(), score)
    assert calls == [[("p10", ""), ("p10", "a"), ("p10", "ab"), ("p10", "abc"), ("p10", "abcd"),
                      ("p11", ""), ("p11", "a")]]
    # Position t holds y_<t: the empty response first, the last prefix is the response without EOS.
    assert [r.prefix_rewards for r in judged] == [[0, 1, 2, 3, 4], [10, 11]]
    assert [r.reward for r in judged] == [r.reward for r in rows]
    examples = tokenized_rollouts(judged)
    assert examples[1].prefix_rewards == [10.0, 11.0]
    with pytest.raises(ValueError, match="rollout 0: 1 prefix rewards for 2 response tokens"):
        TokenizedRollout(0, [1], [3, 2], 0.0, 0, prefix_rewards=[0.0])
