"""A round's metrics row from eval rows and the manifest, checked against values worked out by hand."""

import json
import math

import pytest

from selm.artifacts import BestOfNRow, EvalRow, write_rows
from selm.eval import keys
from selm.eval.round_metrics import read_round_metrics, round_metrics
from selm.rundir import RunDir


def _row(i, reward, num_tokens=4, finished=True, logprob=-2.0, initial=-2.0, tokens=(1, 2, 3), **wins):
    return EvalRow(prompt_index=i, sample_index=0, prompt=f"p{i}", response=f"r{i}", num_tokens=num_tokens,
                   finished=finished, reward=reward, gold_reward=None if reward is None else reward / 2,
                   logprob=logprob, initial_logprob=initial, token_ids=list(tokens), **wins)


MANIFEST = {"phases": {
    "sample": {"seconds": 2.0, "tokens": 100, "drift": {}},
    "judge": {"seconds": 0.5},
    "pair": {"seconds": 0.1, "stats": {keys.PAIRS_COUNT: 3, keys.PAIRS_TIE_RATE: 0.25}},
    "train": {"seconds": 4.0, "tokens": 200, "train": {"train/loss": 0.6}},
    "evaluate": {"seconds": 0.0, "tokens": 10}},
    "peak_memory_gb": 1.5}


def test_round_zero():
    rows = [_row(0, 1.0, num_tokens=2, tokens=(1, 2, 1, 2)), _row(1, 0.0, num_tokens=4, finished=False, tokens=(1, 2))]
    m = round_metrics(0, rows, {"phases": {"evaluate": {"seconds": 3.0, "tokens": 6}}})
    assert m == {
        "round": 0, "reward_mean": 0.5, "reward_std": 0.5, "gold_reward_mean": 0.25, "gold_reward_std": 0.25,
        "kl": 0.0, "win_rate_vs_initial": None, "win_rate_vs_previous": None, "length_mean": 3.0, "eos_rate": 0.5,
        "distinct_2": 2 / 4,  # bigrams (1,2) (2,1) (1,2) | (1,2): two distinct of four
        "time/eval_s": 3.0, "tokens_per_s/eval": 2.0, "peak_memory_gb": None}
    assert list(m)[:3] == ["round", "reward_mean", "reward_std"]


def test_later_round_with_a_pointwise_judge():
    rows = [_row(0, 1.0, logprob=-1.0, initial=-2.0), _row(1, 0.2, logprob=-3.0, initial=-3.0)]
    initial = [_row(0, 0.5), _row(1, 0.2)]
    previous = [_row(0, 1.0), _row(1, 0.9)]
    best = [BestOfNRow(0, "a", 3, 4, 1.0, None), BestOfNRow(1, "b", 3, 4, 0.5, None)]
    m = round_metrics(2, rows, MANIFEST, initial=initial, previous=previous, best_of_n=best)
    assert m[keys.KL] == pytest.approx(0.5)  # mean of (−1 − −2, −3 − −3)
    assert m[keys.WIN_RATE_VS_INITIAL] == 0.75  # a win and a tie
    assert m[keys.WIN_RATE_VS_PREVIOUS] == 0.25  # a tie and a loss
    assert m[keys.PAIRS_COUNT] == 3 and m["train/loss"] == 0.6 and m[keys.PEAK_MEMORY_GB] == 1.5
    assert m["time/sample_s"] == 2.0 and m["tokens_per_s/sample"] == 50.0 and m["tokens_per_s/train"] == 50.0
    assert "tokens_per_s/eval" not in m  # zero seconds: no throughput
    assert m[keys.BEST_OF_N] == 4 and m[keys.BEST_OF_N_REWARD] == 0.75 and m[keys.BEST_OF_N_GOLD_REWARD] is None
    # The order of metrics.jsonl's keys: evaluation, then the manifest's pairing and training, then timings.
    order = list(m)
    assert order.index(keys.DISTINCT_2) < order.index(keys.PAIRS_COUNT) < order.index("train/loss") \
        < order.index("time/sample_s") < order.index(keys.PEAK_MEMORY_GB) < order.index(keys.BEST_OF_N)


def test_a_pairwise_judge_gives_its_own_win_probabilities():
    rows = [_row(0, None, win_vs_initial=1.0, win_vs_previous=0.0), _row(1, None, win_vs_initial=0.5, win_vs_previous=0.5)]
    m = round_metrics(1, rows, MANIFEST)
    assert m[keys.REWARD_MEAN] is None and keys.GOLD_REWARD_MEAN not in m
    assert m[keys.WIN_RATE_VS_INITIAL] == 0.75 and m[keys.WIN_RATE_VS_PREVIOUS] == 0.25


def test_read_round_metrics_reads_the_round_and_its_baselines(tmp_path):
    run = RunDir(tmp_path)
    for k, rewards in ((0, (0.0, 0.0)), (1, (1.0, 0.0))):
        rd = run.round(k)
        rd.path.mkdir(parents=True)
        write_rows(rd.file("eval.jsonl"), [_row(i, r) for i, r in enumerate(rewards)])
        (rd.path / "manifest.json").write_text(json.dumps({**MANIFEST, "round": k}))
    m = read_round_metrics(run, 1)
    assert m == round_metrics(1, [_row(0, 1.0), _row(1, 0.0)], MANIFEST, initial=[_row(0, 0.0), _row(1, 0.0)],
                              previous=[_row(0, 0.0), _row(1, 0.0)])
    assert m[keys.WIN_RATE_VS_INITIAL] == 0.75 and keys.BEST_OF_N not in m
    assert math.isclose(read_round_metrics(run, 0)[keys.REWARD_MEAN], 0.0)


def test_the_linear_alignment_baseline_is_read_beside_best_of_n(tmp_path):
    run = RunDir(tmp_path)
    rd = run.round(0)
    rd.path.mkdir(parents=True)
    write_rows(rd.file("eval.jsonl"), [_row(0, 0.5), _row(1, 0.5)])
    write_rows(rd.file("linear_alignment.jsonl"), [BestOfNRow(0, "a", 3, 1, 1.0, 0.5),
                                                   BestOfNRow(1, "b", 3, 1, 0.0, 0.25)])
    (rd.path / "manifest.json").write_text(json.dumps({**MANIFEST, "round": 0}))
    m = read_round_metrics(run, 0)
    assert m[keys.LINEAR_ALIGNMENT_REWARD] == 0.5 and m[keys.LINEAR_ALIGNMENT_GOLD_REWARD] == 0.375
    assert keys.BEST_OF_N not in m and keys.BEST_OF_N_REWARD not in m
