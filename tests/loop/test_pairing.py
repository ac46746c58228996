"""Round pairing of the family's loop options: SAIL routes, dataset pairs, OSP self-judged soft
labels, A-LoL advantages and HyPO online samples; and the config rules that tie them together."""

import math

import pytest

from selm.artifacts import Candidate, SampleRow
from selm.config import load_config
from selm.errors import ConfigError
from selm.loop.config import RunConfig
from selm.loop.pairing import round_pairs, sail_route
from selm.objectives import build_objective


def samples(n_prompts=3, n_policy=3):
    rows = []
    for i in range(n_prompts):
        cands = [Candidate(f"p{i}s{j}", [i, j], -1.0, 2, True) for j in range(n_policy)]
        cands += [Candidate(f"p{i}dc", [i, 90], None, 2, True, source="dataset"),
                  Candidate(f"p{i}dr", [i, 91], None, 2, True, source="dataset")]
        rows.append(SampleRow(i, f"prompt {i}", [i], cands, None))
    return rows


SCORES = [[0.2, 0.9, 0.5, 0.0, 1.0], [0.4, 0.4, 0.1, 0.3, 0.2], [0.0, 0.6, 0.3, 0.7, 0.8]]


def config(**kw):
    base = {"prompts": {"train": "x.jsonl", "dataset_responses": True}}
    base.update(kw)
    return RunConfig(**base)


def test_dataset_strategy_keeps_the_file_label():
    c = config(pairs={"strategy": "dataset"}, objective="dpo")
    pairs, extras, stats = round_pairs(c, build_objective("dpo"), samples(), SCORES, seed=0)
    assert [(p.chosen, p.rejected) for p in pairs] == [("p0dc", "p0dr"), ("p1dc", "p1dr"), ("p2dc", "p2dr")]
    assert stats["pairs/count"] == 3 and extras == [{}, {}, {}]


@pytest.mark.parametrize(("mix", "route"), [((1, 0, 0), 0), ((0, 1, 0), 1), ((0, 0, 1), 2), ((0, 0, 0), 3)])
def test_each_sail_route_takes_its_responses(mix, route):
    c = config(sail=dict(zip(("dp", "pp", "pr"), mix)), objective="sail", sampling={"n": 3})
    pairs, extras, stats = round_pairs(c, build_objective("sail"), samples(), SCORES, seed=0)
    assert all(e == {"routes": float(route)} for e in extras)
    got = [(p.chosen, p.rejected) for p in pairs]
    if route in (0, 3):
        assert got == [("p0dc", "p0dr"), ("p1dc", "p1dr"), ("p2dc", "p2dr")]
    elif route == 1:  # sampled order: the objective draws the label
        assert got == [("p0s0", "p0s1"), ("p1s0", "p1s1"), ("p2s0", "p2s1")]
    else:  # judge label on the first two samples; prompt 1's tie (0.4, 0.4) is dropped
        assert got == [("p0s1", "p0s0"), ("p2s1", "p2s0")] and stats["pairs/ties_dropped"] == 1


def test_sail_route_frequencies_follow_the_mixture():
    draws = [sail_route(7, i, (0.2, 0.3, 0.1)) for i in range(20000)]
    for code, p in enumerate((0.2, 0.3, 0.1, 0.4)):
        assert draws.count(code) / len(draws) == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / len(draws)))
    assert draws == [sail_route(7, i, (0.2, 0.3, 0.1)) for i in range(20000)]  # seeded per prompt


def test_self_judge_ranks_by_self_scores_with_soft_labels():
    c = RunConfig(self_judge={"tau": 0.5}, objective="osp")
    self_scores = [[-1.0, -0.2, -3.0, -0.1, -9.0], [-2.0, -2.0, -0.5, -1.0, -1.5], [-0.3, -0.4, -0.1, -5.0, -4.0]]
    pairs, extras, stats = round_pairs(c, build_objective("osp"), samples(), SCORES, seed=0, self_scores=self_scores)
    assert [(p.chosen_index, p.rejected_index) for p in pairs] == [(3, 4), (2, 0), (2, 3)]
    for p, e, s in zip(pairs, extras, self_scores):
        assert e["label_probs"] == pytest.approx(1 / (1 + math.exp(-(s[p.chosen_index] - s[p.rejected_index]) / 0.5)))
    # The judge disagrees with all three self-ranked pairs: 0.0 < 1.0, 0.1 < 0.4, 0.3 < 0.7.
    assert stats["pairs/self_judge_agreement"] == 0.0


def test_advantages_are_scores_minus_the_mean_policy_score():
    c = RunConfig(objective="alol", pairs={"strategy": "best_worst"})
    pairs, extras, _ = round_pairs(c, build_objective("alol"), samples(), SCORES, seed=0)
    for p, e in zip(pairs, extras):
        value = sum(SCORES[p.prompt_index][:3]) / 3  # dataset responses are not the policy's samples
        assert e["chosen_advantages"] == pytest.approx(SCORES[p.prompt_index][p.chosen_index] - value)
        assert e["rejected_advantages"] == pytest.approx(SCORES[p.prompt_index][p.rejected_index] - value)


def test_online_ids_are_the_prompts_policy_samples():
    c = config(pairs={"strategy": "dataset"}, objective="hypo", sampling={"n": 3})
    _, extras, _ = round_pairs(c, build_objective("hypo"), samples(), SCORES, seed=0)
    assert extras[1]["online_ids"] == [[1, 0], [1, 1], [1, 2]]


def test_demonstration_pairs_are_added_and_never_ranked():
    rows = [SampleRow(s.prompt_index, s.prompt, s.prompt_ids,
                      s.candidates[:3] + [Candidate(f"p{s.prompt_index}demo", [s.prompt_index, 99], None, 2, True,
                                                    source="demonstration")], None) for s in samples()]
    # The demonstration scores best and worst in turn: if it were ranked it would be paired.
    scores = [[0.2, 0.9, 0.5, 1.0], [0.4, 0.3, 0.1, -1.0], [0.0, 0.6, 0.3, 0.9]]
    c = RunConfig(objective="aihf", demonstrations={})
    pairs, extras, stats = round_pairs(c, build_objective("aihf"), rows, scores, seed=0)
    assert [(p.chosen, p.rejected) for p in pairs] == [
        ("p0s1", "p0s0"), ("p1s0", "p1s2"), ("p2s1", "p2s0"),  # best vs worst of the policy samples
        ("p0demo", "p0s0"), ("p1demo", "p1s0"), ("p2demo", "p2s0")]  # demonstration vs the first sample y′
    assert [e["is_demonstration"] for e in extras] == [0.0] * 3 + [1.0] * 3
    assert stats["pairs/count"] == 3 and stats["pairs/demonstrations"] == 3
    assert not rows[0].candidates[3].sampled


@pytest.mark.parametrize(("overrides", "message"), [
    (["objective=sail"], "the 'sail' objective and the sail: routes go together"),
    (["sail.pr=0.5"], "the 'sail' objective and the sail: routes go together"),
    (["objective=sail", "sail.pr=0.7", "sail.dp=0.5"], "dp \\+ pp \\+ pr must be <= 1"),
    (["objective=sail", "sail.pr=0.5"], "need prompts.dataset_responses: true"),
    (["objective=sail", "sail.pr=1.0", "sampling.n=1", "prompts.dataset_responses=true", "prompts.train=x.jsonl"],
     "need sampling.n >= 2"),
    (["objective=osp"], "soft labels \\(label_probs\\) come from self_judge"),
    (["pairs.strategy=dataset"], "need prompts.dataset_responses: true"),
    (["objective=hypo", "sampling.n=1", "prompts.dataset_responses=true", "prompts.train=x.jsonl"],
     "leave-one-out KL needs sampling.n >= 2"),
])
def test_config_rules(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(RunConfig, None, overrides, defaults={})
