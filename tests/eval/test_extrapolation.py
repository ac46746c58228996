"""Unseen extrapolation: the mass a round moves onto responses outside its training examples, checked
against direct sums over every outcome of a hand-made distribution and of a tiny model, in float64."""

import itertools
import math
from types import SimpleNamespace

import pytest
import torch

import selm.loop.evaluation as evaluation
from selm.artifacts import Candidate, PairRow, SampleRow, write_rows
from selm.engine import collate_sequences, naive_sequence_logps
from selm.eval import keys
from selm.eval.extrapolation import extrapolation_metrics, outside_mass, unseen_best_mass_change, unseen_mass_change
from selm.modeling.tiny import build_tiny_model
from selm.rundir import RunDir

# A hand-made distribution over five responses of one prompt, before and after a round.
BEFORE = {"a": 0.40, "b": 0.30, "c": 0.15, "d": 0.10, "e": 0.05}
AFTER = {"a": 0.50, "b": 0.05, "c": 0.20, "d": 0.05, "e": 0.20}


def test_hand_made_distribution() -> None:
    seen = ["a", "b"]  # the round's chosen and rejected
    before = [[math.log(BEFORE[y]) for y in seen]]
    after = [[math.log(AFTER[y]) for y in seen]]
    # Unseen mass by direct sums: before c + d + e = 0.30, after 0.45.
    assert outside_mass(before[0]) == pytest.approx(0.30, abs=1e-15)
    assert unseen_mass_change(before, after) == pytest.approx(0.45 - 0.30, abs=1e-15)
    # The ideal answer e is unseen: +0.15 of the +0.15 went to it; c and d traded 0.05.
    best = unseen_best_mass_change([[math.log(BEFORE["e"])]], [[math.log(AFTER["e"])]])
    assert best == pytest.approx(0.15, abs=1e-15)
    # Two prompts average; a prompt whose ideal answer was seen contributes 0 to the ideal change.
    metrics = extrapolation_metrics(before * 2, [after[0], before[0]], [[math.log(0.05)], []], [[math.log(0.20)], []])
    assert metrics[keys.UNSEEN_MASS_CHANGE] == pytest.approx(0.15 / 2, abs=1e-15)
    assert metrics[keys.UNSEEN_BEST_MASS_CHANGE] == pytest.approx(0.15 / 2, abs=1e-15)
    assert metrics[keys.UNSEEN_MASS_PROMPTS] == 2.0
    assert math.isnan(unseen_mass_change([], []))
    with pytest.raises(ValueError):
        unseen_mass_change([[0.0]], [])


EOS, PAD, VOCAB, CAP = 2, 0, 5, 2  # a 5-token model, responses of at most 2 tokens


def outcomes() -> list[tuple[int, ...]]:
    """Every sampling outcome with a 2-token cap: EOS at once, or a token other than EOS and then any
    token (EOS: it ends there; another: the cap cuts it)."""
    first = [t for t in range(VOCAB) if t != EOS]
    return [(EOS,)] + list(itertools.product(first, range(VOCAB)))


def exact_logps(model: torch.nn.Module, prompt: list[int], responses: list[tuple[int, ...]]) -> list[float]:
    with torch.no_grad():
        batch = collate_sequences([(prompt, list(y)) for y in responses], PAD)
        return naive_sequence_logps(model, batch).tolist()


@pytest.fixture(scope="module")
def models() -> tuple[torch.nn.Module, torch.nn.Module]:
    return tuple(build_tiny_model(VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  num_key_value_heads=1, seed=seed, pad_token_id=PAD, eos_token_id=EOS).double().eval()
                 for seed in (0, 1))


def test_the_outcomes_of_a_capped_sampler_carry_all_the_mass(models) -> None:
    logps = exact_logps(models[0], [1, 3], outcomes())
    assert math.fsum(math.exp(lp) for lp in logps) == pytest.approx(1.0, abs=1e-12)


def test_a_round_on_a_tiny_model_against_the_sum_over_unseen_outcomes(models, tmp_path, monkeypatch) -> None:
    before, after = models
    prompts = {"p": [1, 3], "q": [4]}
    # Two pairs on p (3 distinct responses: (3, EOS) repeats), one on q.
    pairs = [("p", (3, EOS), (1, 1)), ("p", (3, EOS), (EOS,)), ("q", (4, EOS), (0, 3))]
    ideal = {"p": (1, EOS), "q": (4, EOS)}  # q's ideal answer is its chosen one: seen, so not counted
    run = RunDir(tmp_path)
    rd = run.round(1)
    rd.path.mkdir(parents=True)
    cand = Candidate(text="x", token_ids=[EOS], logprob=0.0, num_tokens=1, finished=True)
    write_rows(rd.file("samples.jsonl"), [SampleRow(i, text, ids, [cand], None) for i, (text, ids) in
                                          enumerate(prompts.items())])
    write_rows(rd.file("pairs.jsonl"), [
        PairRow(prompt_index=0, prompt=p, prompt_ids=prompts[p], chosen="c", rejected="r", chosen_ids=list(c),
                rejected_ids=list(r), explore=None, explore_ids=None, chosen_score=1.0, rejected_score=0.0, margin=1.0)
        for p, c, r in pairs])
    monkeypatch.setattr(evaluation, "tokenize_response", lambda tokenizer, prompt, text: list(ideal[prompt]))
    task = SimpleNamespace(reference_responses=lambda texts: ["ideal"] * len(texts))
    policies = SimpleNamespace(policy=lambda k: (before, after)[k])
    accelerator = SimpleNamespace(process_index=0, num_processes=1)
    got = evaluation.unseen_mass(1, rd, policies, task, SimpleNamespace(pad_token_id=PAD), 1024, accelerator)

    def unseen_sum(model, p):
        seen = {c for q, c, _ in pairs if q == p} | {r for q, _, r in pairs if q == p}
        unseen = [y for y in outcomes() if y not in seen]
        return math.fsum(math.exp(lp) for lp in exact_logps(model, prompts[p], unseen))

    want = sum(unseen_sum(after, p) - unseen_sum(before, p) for p in prompts) / 2
    ideal_p = [ideal["p"]]
    want_best = (math.exp(exact_logps(after, prompts["p"], ideal_p)[0]) -
                 math.exp(exact_logps(before, prompts["p"], ideal_p)[0])) / 2
    # The engine returns its sums in float32: each log-prob is off by ≤ |log p|·2⁻²⁴, so each mass
    # π = exp(log p) by ≤ π·|log p|·2⁻²⁴ ≤ e⁻¹·2⁻²⁴ (the maximum of π·|log π|); the change of the
    # unseen mass sums 2 × 5 such masses (3 seen on p, 2 on q; halved by the mean), the ideal one 2.
    bound = math.exp(-1) * 2.0**-24
    assert got[keys.UNSEEN_MASS_CHANGE] == pytest.approx(want, abs=10 * bound / 2 + 1e-12)
    assert got[keys.UNSEEN_BEST_MASS_CHANGE] == pytest.approx(want_best, abs=2 * bound / 2 + 1e-12)
    assert got[keys.UNSEEN_MASS_PROMPTS] == 2.0
    assert abs(want) > 1e-3  # two different models: the check is not 0 == 0


def test_the_evaluate_phase_carries_the_metrics_into_the_round_row() -> None:
    from selm.artifacts import EvalRow
    from selm.eval.round_metrics import round_metrics

    row = EvalRow(prompt_index=0, sample_index=0, prompt="p", response="r", num_tokens=1, finished=True, reward=1.0,
                  gold_reward=None, logprob=-1.0, initial_logprob=-1.0, token_ids=[1])
    info = {keys.UNSEEN_MASS_CHANGE: 0.125, keys.UNSEEN_MASS_PROMPTS: 2.0}
    manifest = {"phases": {name: {"seconds": 1.0} for name in ("sample", "judge", "pair", "train")} | {
        "evaluate": {"seconds": 1.0, "extrapolation": info}}}
    m = round_metrics(1, [row], manifest, initial=[row], previous=[row])
    assert m[keys.UNSEEN_MASS_CHANGE] == 0.125 and m[keys.UNSEEN_MASS_PROMPTS] == 2.0
