"""Every random choice of a run is seeded from (run seed, round, phase), so a resumed run draws
exactly what an uninterrupted one would have."""

from __future__ import annotations


def derived_seed(seed: int, round_index: int, phase: str) -> int:
    """A seed in [0, 2³¹ − 1) for one use (``phase``: ``"sample"``, ``"train"``, ``"block"``, ...) in round
    ``round_index`` of a run seeded with ``seed``."""
    return (seed * 1_000_003 + round_index * 7919 + sum(map(ord, phase)) * 131) % (2**31 - 1)
