"""collate_sequences: padding, masks and positions, left vs right."""

from __future__ import annotations

import pytest
import torch

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


def test_log_probs_do_not_depend_on_the_padding_side() -> None:
    # End to end with the log-prob engine: explicit position ids make left padding score the same.
    # In float64 the three computations differ only by the order of their sums (~1e-16 relative).
    model = build_tiny_model(vocab_size=32, seed=0).double().eval()
    with torch.no_grad():
        right = sequence_stats(model, collate_sequences(SEQUENCES, PAD, padding_side="right"))
        left = sequence_stats(model, collate_sequences(SEQUENCES, PAD, padding_side="left"))
        naive = naive_sequence_logps(model, collate_sequences(SEQUENCES, PAD))
    assert right.lengths.tolist() == left.lengths.tolist() == [3, 1, 1]
    torch.testing.assert_close(left.logps, right.logps, rtol=1e-12, atol=0)
    torch.testing.assert_close(right.logps, naive, rtol=1e-12, atol=0)
