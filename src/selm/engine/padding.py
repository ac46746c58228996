"""Padding (prompt ids, response ids) sequences into one :class:`SequenceBatch`."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from selm.engine.batch import SequenceBatch
from selm.engine.packing import check_sequences


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
