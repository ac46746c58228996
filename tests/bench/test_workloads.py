"""The benchmark's data and model shapes."""

import math
from statistics import NormalDist

import pytest

from selm.bench.workloads import (
    BOS_ID,
    EOS_ID,
    GEMMA3_270M,
    SHAPES,
    TINY,
    LengthProfile,
    build_model,
    ids_to_text,
    make_pairs,
    num_parameters,
    quantile_lengths,
    sequence_lengths,
    word_tokenizer,
)


def test_quantile_lengths_follow_the_lognormal():
    lengths = quantile_lengths(4, median=100, sigma=0.8, lo=2, hi=10_000)
    z = [NormalDist().inv_cdf(q) for q in (0.125, 0.375, 0.625, 0.875)]
    assert lengths == [round(100 * math.exp(0.8 * x)) for x in z]
    assert quantile_lengths(4, median=100, sigma=3.0, lo=10, hi=200)[0] == 10
    assert quantile_lengths(4, median=100, sigma=3.0, lo=10, hi=200)[-1] == 200


def test_pairs_are_skewed_deterministic_and_well_formed():
    pairs = make_pairs(2, vocab_size=1000)
    assert pairs == make_pairs(2, vocab_size=1000)
    for p in pairs:
        assert p.prompt_ids[0] == BOS_ID and p.chosen_ids[-1] == EOS_ID and p.rejected_ids[-1] == EOS_ID
        assert all(3 <= t < 1000 for t in p.prompt_ids[1:] + p.chosen_ids[:-1] + p.rejected_ids[:-1])
    lengths = sequence_lengths(pairs)
    assert len(lengths) == 4
    # ~190 tokens a sequence on average, and the longest well above the mean: padding costs.
    assert 150 <= sum(lengths) / 4 <= 230
    assert max(lengths) * 4 / sum(lengths) > 1.5
    # The response lengths are the 2B quantiles of the response profile, in some order.
    profile = LengthProfile()
    responses = sorted(len(p.chosen_ids) for p in pairs) + sorted(len(p.rejected_ids) for p in pairs)
    assert sorted(responses) == quantile_lengths(4, profile.response_median, profile.response_sigma, 2, 512)


def test_word_tokenizer_round_trips_exact_ids():
    tok = word_tokenizer(5000)
    ids = [BOS_ID, 17, 4999, 3, EOS_ID]
    assert tok(ids_to_text(ids))["input_ids"] == ids
    # What TRL does: tokenize prompt + " " + completion; the prompt must stay a prefix.
    prompt, completion = [BOS_ID, 5, 6], [7, EOS_ID]
    assert tok(ids_to_text(prompt) + " " + ids_to_text(completion))["input_ids"] == prompt + completion
    assert len(tok) == 5000


def test_gemma_shape_has_270m_parameters_and_tiny_builds():
    # Count from the shape without building the 1 GB model: embedding + 18 layers.
    s = GEMMA3_270M
    q, kv = s.num_attention_heads * s.head_dim, s.num_key_value_heads * s.head_dim
    per_layer = (s.hidden_size * (q + 2 * kv) + q * s.hidden_size + 3 * s.hidden_size * s.intermediate_size
                 + 4 * s.hidden_size + 2 * s.head_dim)  # 4 RMSNorms + q/k norms
    total = s.vocab_size * s.hidden_size + s.num_hidden_layers * per_layer + s.hidden_size
    assert 267e6 < total < 269e6
    model = build_model(TINY)
    t = TINY
    q, kv = t.num_attention_heads * t.head_dim, t.num_key_value_heads * t.head_dim
    per_layer = (t.hidden_size * (q + 2 * kv) + q * t.hidden_size + 3 * t.hidden_size * t.intermediate_size
                 + 4 * t.hidden_size + 2 * t.head_dim)
    assert num_parameters(model) == t.vocab_size * t.hidden_size + t.num_hidden_layers * per_layer + t.hidden_size
    assert model.config.tie_word_embeddings


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_cli_shape_choices_match_the_shapes(name):
    from selm.cli import build_parser

    ns = build_parser().parse_args(["bench", "--shapes", name])
    assert ns.shapes == [name]
