"""The loop's no-grad log-probs: the pairs' equal the trainer's reference pass bit for bit, and the
held-out and self-judging ones equal the naive full-logits computation."""

import random

import pytest
import torch

from selm.artifacts import Candidate, SampleRow
from selm.data import TokenizedPair
from selm.engine import ReferencePolicy, collate_sequences, naive_sequence_logps
from selm.loop.scoring import pair_logps, self_scores, sequence_logps
from selm.modeling.tiny import build_tiny_model
from selm.train.reference_cache import compute_reference_logps

VOCAB, PAD = 64, 0


@pytest.fixture(scope="module")
def model():
    return build_tiny_model(VOCAB)


def _ids(rng, low, high):
    return [rng.randrange(3, VOCAB) for _ in range(rng.randint(low, high))]


def _naive(model, sequences):
    with torch.no_grad():
        return [float(naive_sequence_logps(model, collate_sequences([s], PAD))[0]) for s in sequences]


def test_pair_logps_are_the_trainers_reference_logps(model):
    rng = random.Random(0)
    pairs = [TokenizedPair(i, _ids(rng, 1, 6), _ids(rng, 1, 9), _ids(rng, 1, 9)) for i in range(7)]
    got = pair_logps(model, pairs, PAD, batch_size=3, chunk_size=16, device="cpu")  # 3 + 3 + 1 pairs
    want = compute_reference_logps(ReferencePolicy(model), pairs, PAD, batch_size=3, chunk_size=16, progress=False)
    assert set(got) == {"chosen", "rejected"}
    for role in got:
        assert torch.equal(got[role], want[role]), role  # same batches, so the same bits


def test_sequence_logps_over_several_batches(model):
    rng = random.Random(1)
    sequences = [(_ids(rng, 1, 4), _ids(rng, 1, 5)) for _ in range(70)]  # two batches of the default 64
    got = sequence_logps(ReferencePolicy(model), sequences, PAD, chunk_size=8)
    assert got == pytest.approx(_naive(model, sequences), abs=1e-4)


def test_self_scores_are_mean_token_logprobs_per_candidate(model):
    rng = random.Random(2)

    def candidate():
        ids = _ids(rng, 1, 6)
        return Candidate("", ids, None, len(ids), True)

    samples = [SampleRow(i, "", _ids(rng, 1, 4), [candidate() for _ in range(3)], None) for i in range(4)]
    scores = self_scores(model, samples, PAD, chunk_size=8)
    want = [[lp / len(x.token_ids) for lp, x in zip(_naive(model, [(s.prompt_ids, x.token_ids) for x in s.candidates]),
                                                     s.candidates)] for s in samples]
    assert [len(row) for row in scores] == [3] * 4
    for got_row, want_row in zip(scores, want):
        assert got_row == pytest.approx(want_row, abs=1e-5)
