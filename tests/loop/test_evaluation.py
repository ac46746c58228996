"""Held-out evaluation: one row per sample with rewards and log-probs, a pairwise judge's wins against
earlier rounds, and the best-of-N pick; with a stand-in sampler and judges, and a tiny π0."""

from types import SimpleNamespace

import pytest
import torch

from selm.artifacts import EvalRow, write_rows
from selm.config import StrictModel
from selm.engine import ReferencePolicy, collate_sequences, naive_sequence_logps
from selm.judges import Judge
from selm.loop.config import RunConfig
from selm.loop.evaluation import HeldOutEvaluation
from selm.loop.sampling import BlockSampler
from selm.modeling.tiny import build_tiny_model, build_tokenizer
from selm.rundir import RunDir
from selm.sampling import Completion

PROMPTS = ["sort: 3 1", "sort: 2 2", "sort: 9 1 4"]


class LengthSampler:
    """Completion j of a prompt: 1 + (seed + j + first prompt id) mod 4 tokens of id 5 ("x" per token)."""

    def __init__(self):
        self.outputs = []  # every prompt's completions, over all calls

    def generate(self, prompt_ids, params, progress=None):
        out = []
        for ids in prompt_ids:
            lengths = [1 + (params.seed + j + ids[0]) % 4 for j in range(params.n)]
            out.append([Completion([5] * n, "x" * n, -0.5 * n, n, n < 4) for n in lengths])
        self.outputs += out
        return out


class LengthJudge(Judge):
    kind = "length"

    def _score(self, prompts, responses):
        return [float(len(r)) for r in responses]


class LongerWins(Judge):
    kind = "longer"
    is_pairwise = True

    def _compare(self, prompts, a, b):
        return [1.0 if len(x) > len(y) else 0.0 if len(x) < len(y) else 0.5 for x, y in zip(a, b)]


@pytest.fixture(scope="module")
def pi0():
    tokenizer = build_tokenizer(vocab_size=300)
    return tokenizer, build_tiny_model(len(tokenizer), hidden_size=32, num_hidden_layers=1)


def _evaluation(tmp_path, pi0, judge, **eval_options):
    tokenizer, model = pi0
    config = RunConfig(eval={"samples_per_prompt": 2, **eval_options})
    accelerator = SimpleNamespace(process_index=0, num_processes=1)
    policies = SimpleNamespace(initial_reference=lambda: ReferencePolicy(model))
    sampling = BlockSampler(config, tokenizer, accelerator, RunDir(tmp_path), progress=False)
    return HeldOutEvaluation(config, PROMPTS, judge, None, sampling, policies, RunDir(tmp_path), accelerator)


def test_rows_of_round_zero_and_a_later_round(tmp_path, pi0):
    evaluation = _evaluation(tmp_path, pi0, LengthJudge(StrictModel()))
    rows = evaluation.rows(0, LengthSampler())
    assert [(r.prompt_index, r.sample_index) for r in rows] == [(i, j) for i in range(3) for j in range(2)]
    assert all(r.reward == len(r.response) == r.num_tokens and r.gold_reward is None for r in rows)
    assert all(r.initial_logprob == r.logprob == -0.5 * r.num_tokens for r in rows)  # round 0 is π0 itself
    assert all(r.prompt == PROMPTS[r.prompt_index] and r.win_vs_initial is None for r in rows)
    later = evaluation.rows(1, LengthSampler())
    tokenizer, model = pi0
    with torch.no_grad():
        want = [float(naive_sequence_logps(model, collate_sequences([(evaluation.prompt_ids[r.prompt_index],
                                                                      r.token_ids)], tokenizer.pad_token_id))[0])
                for r in later]
    assert [r.initial_logprob for r in later] == pytest.approx(want, abs=1e-5)  # log π0, not the sampler's


def test_a_pairwise_judge_compares_with_round_zero_and_the_previous_round(tmp_path, pi0):
    evaluation = _evaluation(tmp_path, pi0, LongerWins(StrictModel()))
    for k, length in ((0, 2), (1, 3)):
        rows = [EvalRow(i, j, PROMPTS[i], "x" * length, length, True, None, None, -1.0, -1.0, [5] * length)
                for i in range(3) for j in range(2)]
        RunDir(tmp_path).round(k).path.mkdir(parents=True)
        write_rows(RunDir(tmp_path).round(k).file("eval.jsonl"), rows)
    rows = evaluation.rows(2, LengthSampler())
    for r in rows:
        assert r.reward is None
        assert r.win_vs_initial == (1.0 if r.num_tokens > 2 else 0.5 if r.num_tokens == 2 else 0.0)
        assert r.win_vs_previous == (1.0 if r.num_tokens > 3 else 0.5 if r.num_tokens == 3 else 0.0)


@pytest.mark.parametrize("judge", [LengthJudge(StrictModel()), LongerWins(StrictModel())])
def test_best_of_n_keeps_the_judges_favourite(tmp_path, pi0, judge):
    evaluation = _evaluation(tmp_path, pi0, judge, best_of_n=3)
    sampler = LengthSampler()
    best, tokens = evaluation.best_of_n(sampler)
    samples = sampler.outputs
    assert len(samples) == 3 and tokens == sum(o.num_tokens for outs in samples for o in outs)
    for row, outs in zip(best, samples):
        assert row.n == 3 and row.num_tokens == max(o.num_tokens for o in outs) == len(row.response)
        assert row.reward == (None if judge.is_pairwise else float(row.num_tokens)) and row.gold_reward is None
