"""Length-grouped batch order: less padding, still shuffled."""

from __future__ import annotations

import random
from collections.abc import Sequence

# Sorting happens within windows of this many batches: enough to group similar lengths, small
# enough that each window is still a random sample of the data.
WINDOW_BATCHES = 50


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Batches of indices whose examples have similar lengths, in a seeded random order.

    The indices are shuffled, cut into windows of ``WINDOW_BATCHES * batch_size``, sorted by length
    (longest first) inside each window and cut into batches; the batch order is then shuffled.
    Only the last batch may be smaller than ``batch_size``.

    Args:
        lengths: [L] token count of each example (e.g. prompt + longest response).
        batch_size: examples per batch.
        seed: the same seed gives the same batches.

    Returns:
        ceil(L / batch_size) lists of indices; every index appears exactly once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = WINDOW_BATCHES * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: -lengths[i])
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    # Keep the one possibly short batch last, so all others are full.
    full = [b for b in batches if len(b) == batch_size]
    short = [b for b in batches if len(b) < batch_size]
    rng.shuffle(full)
    return full + short
