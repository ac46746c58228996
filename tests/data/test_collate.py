"""collate_sequences / collate_preference_rows: padding, masks and positions, left vs right, the row layout."""

from __future__ import annotations

import pytest
import torch

from selm.data import TokenizedPair, collate_preference_batch, collate_preference_rows
from selm.engine import collate_sequences, naive_sequence_logps, sequence_stats
from selm.modeling.tiny import build_tiny_model

PAD = 0
SEQUENCES = [([11, 12], [21, 22, 23]), ([13], [24]), ([14, 15, 16], [25])]


def test_right_padding_values() -> None:
    batch = collate_sequences(SEQUENCES, PAD)
    assert batch.input_ids.tolist() == [[11, 12, 21, 22, 23], [13, 24, 0, 0, 0], [14, 15, 16, 25, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]]
    assert batch.response_mask.tolist() == [[False, False, True, True, True], [False, True, False, False, False],
                                            [False, False, False, True, False]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 4], [0, 1, 0, 0, 0], [0, 1, 2, 3, 0]]
    assert batch.input_ids.dtype == torch.long and batch.response_mask.dtype == torch.bool


def test_left_padding_values() -> None:
    batch = collate_sequences(SEQUENCES, PAD, padding_side="left")
    assert batch.input_ids.tolist() == [[11, 12, 21, 22, 23], [0, 0, 0, 13, 24], [0, 14, 15, 16, 25]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1], [0, 0, 0, 1, 1], [0, 1, 1, 1, 1]]
    assert batch.response_mask.tolist() == [[False, False, True, True, True], [False, False, False, False, True],
                                            [False, False, False, False, True]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 4], [0, 0, 0, 0, 1], [0, 0, 1, 2, 3]]


def test_left_and_right_padding_hold_the_same_sequences() -> None:
    right = collate_sequences(SEQUENCES, PAD, padding_side="right")
    left = collate_sequences(SEQUENCES, PAD, padding_side="left")
    for i, (prompt, response) in enumerate(SEQUENCES):
        for batch in (right, left):
            real = batch.attention_mask[i].bool()
            assert batch.input_ids[i, real].tolist() == prompt + response
            assert batch.response_mask[i, real].tolist() == [False] * len(prompt) + [True] * len(response)
            assert batch.position_ids[i, real].tolist() == list(range(len(prompt) + len(response)))
            # Never on padding.
            assert not batch.response_mask[i, ~real].any()


def test_pad_to_multiple_of() -> None:
    batch = collate_sequences(SEQUENCES, PAD, pad_to_multiple_of=8)
    assert batch.input_ids.shape == (3, 8)
    assert batch.attention_mask.sum(-1).tolist() == [5, 2, 4]
    assert batch.response_mask.sum(-1).tolist() == [3, 1, 1]


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="sequence 1 has an empty prompt"):
        collate_sequences([([1], [2]), ([], [3])], PAD)
    with pytest.raises(ValueError, match="padding_side must be 'right' or 'left'"):
        collate_sequences(SEQUENCES, PAD, padding_side="middle")
    with pytest.raises(ValueError, match="no sequences"):
        collate_sequences([], PAD)


PAIRS = [TokenizedPair(1, [5, 6], [7, 2], [8, 8, 2], [9, 2]), TokenizedPair(2, [5], [10, 2], [11, 2], [12, 2])]


def test_preference_batch_stacks_chosen_then_rejected_then_explore() -> None:
    batch = collate_preference_batch(PAIRS, PAD, include_explore=True)
    assert batch.num_sequences == 6
    assert batch.input_ids.tolist() == [[5, 6, 7, 2, 0], [5, 10, 2, 0, 0],
                                        [5, 6, 8, 8, 2], [5, 11, 2, 0, 0],
                                        [5, 6, 9, 2, 0], [5, 12, 2, 0, 0]]
    assert batch.response_mask.sum(-1).tolist() == [2, 2, 3, 2, 2, 2]
    assert collate_preference_batch(PAIRS, PAD).input_ids.tolist() == batch.input_ids[:4].tolist()


def test_row_layout_names_every_role_and_online_samples_are_pair_major() -> None:
    pairs = [TokenizedPair(1, [5, 6], [7, 2], [8, 8, 2], [9, 2], online_ids=[[30], [31, 2]]),
             TokenizedPair(2, [5], [10, 2], [11, 2], [12, 2], online_ids=[[32], [33, 2]])]
    batch, layout = collate_preference_rows(pairs, PAD, include_explore=True, include_online=True)
    assert layout.roles == ("chosen", "rejected", "explore", "online") and layout.num_rows == batch.num_sequences == 10
    responses = [ids[mask].tolist() for ids, mask in zip(batch.input_ids, batch.response_mask)]
    assert [responses[i] for i in range(*layout.rows("chosen").indices(10))] == [[7, 2], [10, 2]]
    assert [responses[i] for i in range(*layout.rows("rejected").indices(10))] == [[8, 8, 2], [11, 2]]
    assert [responses[i] for i in range(*layout.rows("explore").indices(10))] == [[9, 2], [12, 2]]
    assert [responses[i] for i in range(*layout.rows("online").indices(10))] == [[30], [31, 2], [32], [33, 2]]
    _, plain = collate_preference_rows(pairs, PAD)
    assert plain.roles == ("chosen", "rejected") and plain.rows("rejected") == slice(2, 4)
    with pytest.raises(KeyError, match="no explore rows"):
        plain.rows("explore")


def test_preference_batch_without_explore_ids() -> None:
    pairs = [TokenizedPair(4, [5], [7], [8])]
    with pytest.raises(ValueError, match=r"include_explore=True but pairs \[4\] have no explore_ids"):
        collate_preference_batch(pairs, PAD, include_explore=True)


def test_log_probs_do_not_depend_on_the_padding_side() -> None:
    # End to end with the log-prob engine: explicit position ids make left padding score the same.
    model = build_tiny_model(vocab_size=32, seed=0).eval()
    with torch.no_grad():
        right = sequence_stats(model, collate_sequences(SEQUENCES, PAD, padding_side="right"))
        left = sequence_stats(model, collate_sequences(SEQUENCES, PAD, padding_side="left"))
        naive = naive_sequence_logps(model, collate_sequences(SEQUENCES, PAD))
    assert right.lengths.tolist() == left.lengths.tolist() == [3, 1, 1]
    torch.testing.assert_close(left.logps, right.logps, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(right.logps, naive, rtol=1e-5, atol=1e-5)
