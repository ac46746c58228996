"""score_sequences: the engine's no-grad scoring loop gives each sequence's own log-prob, whatever the
batching, and leaves the model as it found it."""

from __future__ import annotations

import random

import pytest
import torch

from selm.engine import ReferencePolicy, collate_sequences, naive_sequence_logps, score_sequences
from selm.modeling.tiny import build_tiny_model

PAD = 0


def sequences(n: int, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    rng = random.Random(seed)
    return [([rng.randrange(1, 64) for _ in range(rng.randrange(1, 6))],
             [rng.randrange(1, 64) for _ in range(rng.randrange(1, 8))]) for _ in range(n)]


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    # float64, so that values computed in different batches differ only by the order of their sums.
    return build_tiny_model(vocab_size=64, seed=0).double()


def one_by_one(model: torch.nn.Module, seqs: list[tuple[list[int], list[int]]]) -> torch.Tensor:
    """The independent computation: full logits of each sequence on its own, no padding at all."""
    with torch.no_grad():
        return torch.cat([naive_sequence_logps(model, collate_sequences([s], PAD)) for s in seqs])


def test_each_sequence_gets_its_own_summed_log_prob_in_float32(model: torch.nn.Module) -> None:
    seqs = sequences(11)
    got = score_sequences(model, seqs, PAD, batch_size=4)
    assert got.dtype == torch.float32 and got.device.type == "cpu" and got.shape == (11,)
    # The float64 values rounded once to float32: within one float32 ulp (2⁻²³ relative).
    torch.testing.assert_close(got.double(), one_by_one(model, seqs), rtol=2**-23, atol=0)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batch_size_and_packing_do_not_change_the_values(model: torch.nn.Module, batch_size: int) -> None:
    seqs = sequences(7, seed=1)
    base = score_sequences(model, seqs, PAD, batch_size=2)
    torch.testing.assert_close(score_sequences(model, seqs, PAD, batch_size=batch_size), base, rtol=2**-23, atol=0)
    torch.testing.assert_close(score_sequences(model, seqs, PAD, batch_size=batch_size, packing="rows"), base,
                               rtol=2**-23, atol=0)


def test_the_model_is_scored_in_eval_mode_and_left_in_its_mode(model: torch.nn.Module) -> None:
    dropout = build_tiny_model(vocab_size=64, seed=0).double()
    for layer in dropout.model.layers:
        layer.self_attn.attention_dropout = 0.5
    dropout.train()
    seqs = sequences(5, seed=2)
    got = score_sequences(dropout, seqs, PAD)
    assert dropout.training
    # No dropout while scoring: the same as the model without dropout.
    torch.testing.assert_close(got, score_sequences(model, seqs, PAD), rtol=0, atol=0)
    assert not got.requires_grad


def test_a_reference_policy_is_scored_through_its_active_module(model: torch.nn.Module) -> None:
    seqs = sequences(3, seed=3)
    torch.testing.assert_close(score_sequences(ReferencePolicy(model), seqs, PAD), score_sequences(model, seqs, PAD),
                               rtol=0, atol=0)


def test_nothing_to_score() -> None:
    assert score_sequences(build_tiny_model(vocab_size=64), [], PAD).shape == (0,)


def test_score_tokens_returns_each_response_s_tokens_summing_to_score_sequences():
    from selm.engine import score_tokens
    from selm.modeling.value_head import ValueHead

    torch.manual_seed(0)
    model = build_tiny_model(vocab_size=97)
    head = ValueHead(model.config.hidden_size)
    torch.nn.init.normal_(head.linear.weight)
    sequences = [([5, 6, 7], [8, 9]), ([3], [4, 10, 11, 12]), ([13, 14], [15])]
    scores = score_tokens(model, sequences, pad_token_id=0, value_head=head, batch_size=2)
    assert [len(x) for x in scores.logps] == [2, 4, 1] == [len(v) for v in scores.values]
    sums = score_sequences(model, sequences, pad_token_id=0, batch_size=3)
    # float32 sums of up to 4 terms of magnitude ~log(97): a few ulps of ~20 nats.
    torch.testing.assert_close(torch.stack([x.sum() for x in scores.logps]), sums, rtol=0, atol=1e-5)
    assert model.training
