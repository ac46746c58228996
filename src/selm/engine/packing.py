"""Padding-free packing: (prompt ids, response ids) sequences laid end to end, no pad tokens between.

Two layouts, both a :class:`PackedSequenceBatch`:

- ``"one_row"``: all N sequences in a single row [1, Σ lengths]. Flash-attention kernels read the
  boundaries from ``position_ids`` only when there is one row, and their cost is linear in the
  sequences' own lengths, so this is the layout for them.
- ``"rows"``: first-fit-decreasing into rows as wide as the longest sequence. With sdpa / eager /
  flex attention the mask is dense over a row, so one long row would cost (Σ lengths)² attention
  work. R rows of width L = max(length) cost R · L² with R ≤ N: never more than padding the N
  sequences to L, and the linear layers run over R · L ≈ Σ lengths slots instead of N · L.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from selm.engine.batch import PackedSequenceBatch

PackingLayout = Literal["rows", "one_row"]


def check_sequences(sequences: Sequence[tuple[Sequence[int], Sequence[int]]], pad_token_id: int | None) -> None:
    """Raise ValueError unless there are sequences, a pad id, and a non-empty prompt in each."""
    if not sequences:
        raise ValueError("no sequences to batch")
    if pad_token_id is None:
        raise ValueError("pad_token_id is None; set a pad token on the tokenizer (e.g. the EOS token)")
    for i, (prompt, _) in enumerate(sequences):
        if not prompt:
            raise ValueError(f"sequence {i} has an empty prompt: its first response token would have no context")


def _first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices grouped into bins of total length ≤ capacity (longest first; ties in index order)."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: -lengths[j]):
        for b, free in enumerate(room):
            if lengths[i] <= free:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(capacity - lengths[i])
    return bins


def pack_sequences(
    sequences: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_token_id: int,
    layout: PackingLayout = "rows",
    pad_to_multiple_of: int | None = None,
) -> PackedSequenceBatch:
    """Pack N (prompt ids, response ids) sequences without padding between them.

    Args:
        sequences: N pairs of python int lists; each prompt must be non-empty (so a row never
            starts with a scored token, and a boundary never sits inside a scored prediction).
        pad_token_id: id written on the filler at the end of rows shorter than the widest row.
        layout: ``"rows"`` (rows of width max length, first-fit decreasing) or ``"one_row"``.
        pad_to_multiple_of: round the row width L up to a multiple of this (more filler).

    Returns:
        PackedSequenceBatch with, each [R, L]: ``input_ids``, ``position_ids`` (0.. from each
        sequence's first token; 0.. again over a row's filler), ``response_mask`` (True on
        response tokens only), ``sequence_ids`` (the sequence's index in ``sequences``; −1 on
        filler); ``num_sequences`` = N.
    """
    if layout not in ("rows", "one_row"):
        raise ValueError(f"layout must be 'rows' or 'one_row', got {layout!r}")
    check_sequences(sequences, pad_token_id)
    lengths = [len(p) + len(r) for p, r in sequences]
    rows = [list(range(len(sequences)))] if layout == "one_row" else _first_fit_decreasing(lengths, max(lengths))
    width = max(sum(lengths[i] for i in row) for row in rows)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    shape = (len(rows), width)
    input_ids = torch.full(shape, pad_token_id, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    response_mask = torch.zeros(shape, dtype=torch.bool)
    sequence_ids = torch.full(shape, -1, dtype=torch.long)
    for r, row in enumerate(rows):
        start = 0
        for i in row:
            prompt, response = sequences[i]
            end = start + lengths[i]
            input_ids[r, start:end] = torch.tensor([*prompt, *response], dtype=torch.long)
            position_ids[r, start:end] = torch.arange(lengths[i])
            response_mask[r, start + len(prompt):end] = True
            sequence_ids[r, start:end] = i
            start = end
        # The filler restarts at position 0, so it is a separate (unscored) sequence for the mask.
        position_ids[r, start:] = torch.arange(width - start)
    return PackedSequenceBatch(input_ids, position_ids, response_mask, sequence_ids, len(sequences))
