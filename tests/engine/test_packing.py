"""pack_sequences: padding-free rows, positions restarting per sequence, sequence ids, filler."""

from __future__ import annotations

import random

import pytest

from selm.data import TokenizedPair, collate_preference_batch
from selm.engine import pack_sequences

PAD = 0
F, T = False, True
# Lengths 5, 2, 4, 3: first-fit decreasing into rows of width 5 gives [0], [2 + filler], [3, 1].
SEQUENCES = [([11, 12], [21, 22, 23]), ([13], [24]), ([14, 15, 16], [25]), ([17], [26, 27])]


def test_rows_layout_values() -> None:
    batch = pack_sequences(SEQUENCES, PAD)
    assert batch.num_sequences == 4
    assert batch.input_ids.tolist() == [[11, 12, 21, 22, 23], [14, 15, 16, 25, PAD], [17, 26, 27, 13, 24]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 0], [0, 1, 2, 0, 1]]
    assert batch.response_mask.tolist() == [[F, F, T, T, T], [F, F, F, T, F], [F, T, T, F, T]]
    assert batch.sequence_ids.tolist() == [[0, 0, 0, 0, 0], [2, 2, 2, 2, -1], [3, 3, 3, 1, 1]]
    assert batch.decoder_inputs()["attention_mask"] is None
    assert batch.response_lengths().tolist() == [3, 1, 1, 2]
    # Scored tokens in row-major order over response_mask[:, 1:]: row 0: 21 22 23, row 1: 25, row 2: 26 27 24.
    assert batch.response_sequence_index().tolist() == [0, 0, 0, 2, 3, 3, 1]


def test_one_row_layout_values_and_filler() -> None:
    batch = pack_sequences(SEQUENCES, PAD, layout="one_row")
    assert batch.input_ids.tolist() == [[11, 12, 21, 22, 23, 13, 24, 14, 15, 16, 25, 17, 26, 27]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1, 0, 1, 2, 3, 0, 1, 2]]
    assert batch.sequence_ids.tolist() == [[0] * 5 + [1] * 2 + [2] * 4 + [3] * 3]
    padded = pack_sequences(SEQUENCES, PAD, layout="one_row", pad_to_multiple_of=8)
    assert padded.input_ids.shape == (1, 16)
    assert padded.input_ids[0, 14:].tolist() == [PAD, PAD]
    assert padded.position_ids[0, 14:].tolist() == [0, 1]  # filler restarts: its own unscored segment
    assert padded.sequence_ids[0, 14:].tolist() == [-1, -1]
    assert not padded.response_mask[0, 14:].any()


@pytest.mark.parametrize("layout", ["rows", "one_row"])
def test_every_sequence_appears_once_contiguously_with_its_own_positions(layout) -> None:
    rng = random.Random(0)
    sequences = [([rng.randrange(3, 99) for _ in range(rng.randrange(1, 9))],
                  [rng.randrange(3, 99) for _ in range(rng.randrange(0, 30 if i % 5 == 0 else 6))])
                 for i in range(23)]
    batch = pack_sequences(sequences, PAD, layout=layout)
    rows, width = batch.input_ids.shape
    assert width == (max(len(p) + len(r) for p, r in sequences) if layout == "rows"
                     else sum(len(p) + len(r) for p, r in sequences))
    assert rows == 1 if layout == "one_row" else rows <= len(sequences)
    for i, (prompt, response) in enumerate(sequences):
        where = (batch.sequence_ids == i).nonzero()
        row = int(where[0, 0])
        assert (where[:, 0] == row).all(), "a sequence never spans two rows"
        cols = where[:, 1]
        assert cols.tolist() == list(range(int(cols[0]), int(cols[0]) + len(prompt) + len(response)))
        assert batch.input_ids[row, cols].tolist() == prompt + response
        assert batch.position_ids[row, cols].tolist() == list(range(len(prompt) + len(response)))
        assert batch.response_mask[row, cols].tolist() == [F] * len(prompt) + [T] * len(response)
    filler = batch.sequence_ids == -1
    assert (batch.input_ids[filler] == PAD).all() and not batch.response_mask[filler].any()
    assert int((~filler).sum()) == sum(len(p) + len(r) for p, r in sequences)


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="sequence 1 has an empty prompt"):
        pack_sequences([([1], [2]), ([], [3])], PAD)
    with pytest.raises(ValueError, match="no sequences"):
        pack_sequences([], PAD)
    with pytest.raises(ValueError, match="layout must be"):
        pack_sequences(SEQUENCES, PAD, layout="columns")
    with pytest.raises(ValueError, match="pad_token_id is None"):
        pack_sequences(SEQUENCES, None)


def test_preference_batch_packs_chosen_then_rejected_then_explore() -> None:
    pairs = [TokenizedPair(1, [5, 6], [7, 2], [8, 8, 2], [9, 2]), TokenizedPair(2, [5], [10, 2], [11, 2], [12, 2])]
    batch = collate_preference_batch(pairs, PAD, include_explore=True, packing="one_row")
    assert batch.num_sequences == 6
    ids, seq = batch.input_ids[0], batch.sequence_ids[0]
    assert [ids[seq == i].tolist() for i in range(6)] == [[5, 6, 7, 2], [5, 10, 2], [5, 6, 8, 8, 2], [5, 11, 2],
                                                          [5, 6, 9, 2], [5, 12, 2]]
    assert batch.response_lengths().tolist() == [2, 2, 3, 2, 2, 2]
