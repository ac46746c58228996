"""collate_preference_batch / collate_preference_rows: the responses of each role stacked, the row layout.

(collate_sequences, the padding itself, is tested in tests/engine/test_padding.py.)"""

from __future__ import annotations

import pytest

from selm.data import TokenizedPair, collate_preference_batch, collate_preference_rows

PAD = 0
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
