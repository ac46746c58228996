"""Padding (prompt ids, response ids) sequences into one :class:`SequenceBatch`."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from selm.data.packing import PackingLayout, check_sequences, pack_sequences
from selm.data.tokenized_pairs import TokenizedPair
from selm.logprobs import AnySequenceBatch, SequenceBatch


def collate_sequences(
    sequences: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_token_id: int,
    padding_side: str = "right",
    pad_to_multiple_of: int | None = None,
) -> SequenceBatch:
    """Pad N (prompt ids, response ids) sequences to a common length T.

    Args:
        sequences: N pairs of python int lists; each prompt must be non-empty (the first response
            token is predicted from the last prompt token).
        pad_token_id: id written at padding positions (never attended to or scored).
        padding_side: ``"right"`` (pads after each sequence) or ``"left"`` (pads before).
        pad_to_multiple_of: round T up to a multiple of this (kernel-friendly shapes).

    Returns:
        SequenceBatch with, each [N, T]: ``input_ids`` (long), ``attention_mask`` (long, 1 on real
        tokens), ``response_mask`` (bool, True on response tokens only), ``position_ids`` (long,
        0.. from each sequence's first real token; 0 on padding). T = the longest prompt+response,
        rounded up to ``pad_to_multiple_of``.
    """
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    check_sequences(sequences, pad_token_id)
    lengths = [len(p) + len(r) for p, r in sequences]
    t = max(lengths)
    if pad_to_multiple_of:
        t = -(-t // pad_to_multiple_of) * pad_to_multiple_of
    n = len(sequences)
    input_ids = torch.full((n, t), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((n, t), dtype=torch.long)
    response_mask = torch.zeros((n, t), dtype=torch.bool)
    position_ids = torch.zeros((n, t), dtype=torch.long)
    for i, ((prompt, response), length) in enumerate(zip(sequences, lengths)):
        start = t - length if padding_side == "left" else 0
        real = slice(start, start + length)
        input_ids[i, real] = torch.tensor([*prompt, *response], dtype=torch.long)
        attention_mask[i, real] = 1
        response_mask[i, start + len(prompt):start + length] = True
        position_ids[i, real] = torch.arange(length)
    return SequenceBatch(input_ids, attention_mask, response_mask, position_ids)


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
            without padding (see :func:`selm.data.packing.pack_sequences`; ``padding_side`` is
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
