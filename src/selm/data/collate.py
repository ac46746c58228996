"""The preference batch's row layout: every response of B pairs in one engine batch."""

from __future__ import annotations

from collections.abc import Sequence

from selm.data.tokenized_pairs import TokenizedPair
from selm.engine import (
    AnySequenceBatch,
    PackingLayout,
    collate_sequences,
    pack_sequences,
)


def collate_preference_batch(
    pairs: Sequence[TokenizedPair],
    pad_token_id: int,
    include_explore: bool = False,
    padding_side: str = "right",
    pad_to_multiple_of: int | None = None,
    include_online: bool = False,
    packing: PackingLayout | None = None,
) -> AnySequenceBatch:
    """All responses of B pairs in one batch, for a single forward pass.

    Rows 0..B−1 are prompt+chosen, B..2B−1 prompt+rejected and, with ``include_explore``,
    2B..3B−1 prompt+explore, each block in the order of ``pairs``. With ``include_online``, the
    k online samples of every pair follow (pair-major: pair 0's k samples, then pair 1's, ...);
    every pair must have the same k.

    Args:
        packing: None pads (see :func:`collate_sequences`); ``"rows"`` or ``"one_row"`` packs
            without padding (see :func:`selm.engine.packing.pack_sequences`; ``padding_side`` is
            then unused).

    Returns:
        SequenceBatch of N = 2B (or 3B) rows; see :func:`collate_sequences`. With ``packing``, a
        PackedSequenceBatch of the same N sequences in the same order.

    Raises:
        ValueError: ``include_explore`` and a pair has no ``explore_ids``.
    """
    sequences = [(p.prompt_ids, p.chosen_ids) for p in pairs] + [(p.prompt_ids, p.rejected_ids) for p in pairs]
    if include_explore:
        missing = [p.index for p in pairs if p.explore_ids is None]
        if missing:
            raise ValueError(f"include_explore=True but pairs {missing[:5]} have no explore_ids")
        sequences += [(p.prompt_ids, p.explore_ids) for p in pairs]
    if include_online:
        counts = {len(p.online_ids) if p.online_ids else 0 for p in pairs}
        if len(counts) != 1 or 0 in counts:
            raise ValueError(f"include_online=True needs the same number (>= 1) of online samples per pair, got {sorted(counts)}")
        sequences += [(p.prompt_ids, ids) for p in pairs for ids in p.online_ids]
    if packing is not None:
        return pack_sequences(sequences, pad_token_id, packing, pad_to_multiple_of)
    return collate_sequences(sequences, pad_token_id, padding_side, pad_to_multiple_of)
