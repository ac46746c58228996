"""length_grouped_batches: every index once, similar lengths together, seeded order."""

from __future__ import annotations

from selm.data import length_grouped_batches


def test_groups_similar_lengths_and_covers_every_index() -> None:
    lengths = [(i * 37) % 100 for i in range(100)]  # a permutation of 0..99
    batches = length_grouped_batches(lengths, batch_size=10, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(100))
    # One window holds everything: batch k holds exactly the lengths 10k..10k+9.
    assert sorted(sorted(lengths[i] for i in b) for b in batches) == [list(range(k, k + 10)) for k in range(0, 100, 10)]


def test_only_the_last_batch_is_short() -> None:
    batches = length_grouped_batches(list(range(23)), batch_size=5, seed=1)
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]


def test_seeded() -> None:
    lengths = list(range(60))
    assert length_grouped_batches(lengths, 4, seed=3) == length_grouped_batches(lengths, 4, seed=3)
    assert length_grouped_batches(lengths, 4, seed=3) != length_grouped_batches(lengths, 4, seed=4)
