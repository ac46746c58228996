"""The preference batch's row layout: every response of B pairs in one engine batch, and where each role's rows are."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from selm.data.tokenized_pairs import TokenizedPair
from selm.engine import (
    AnySequenceBatch,
    PackingLayout,
    collate_sequences,
    pack_sequences,
)
from selm.objectives.fields import PREFERENCE_FIELDS

Sequences = list[tuple[list[int], list[int]]]


@dataclass(frozen=True)
class RowLayout:
    """Where each response role of ``num_pairs`` pairs sits among a collated batch's rows.

    Each role is one block of contiguous rows holding its pairs in order; a role with k responses
    per pair (the online samples) holds them pair-major: pair 0's k, then pair 1's, ...

    Attributes:
        num_pairs: B.
        blocks: (role, responses per pair) in row order.
    """

    num_pairs: int
    blocks: tuple[tuple[str, int], ...]

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(role for role, _ in self.blocks)

    @property
    def num_rows(self) -> int:
        return sum(per_pair for _, per_pair in self.blocks) * self.num_pairs

    def rows(self, role: str) -> slice:
        """The rows of ``role``: B·k rows for k responses per pair.

        Raises:
            KeyError: the batch holds no rows of ``role``.
        """
        start = 0
        for name, per_pair in self.blocks:
            end = start + per_pair * self.num_pairs
            if name == role:
                return slice(start, end)
            start = end
        raise KeyError(f"the batch holds no {role} rows (roles: {', '.join(self.roles)})")


def preference_sequences(
    pairs: Sequence[TokenizedPair],
    include_explore: bool = False,
    include_online: bool = False,
) -> tuple[Sequences, RowLayout]:
    """Every (prompt ids, response ids) of ``pairs`` in row order, and where each role's rows are.

    The roles come in the order of ``selm.objectives.fields.PREFERENCE_FIELDS.roles``: chosen,
    rejected, then explore with ``include_explore``, then the k online samples of every pair with
    ``include_online`` (every pair must have the same k).

    Raises:
        ValueError: ``include_explore`` and a pair has no ``explore_ids``; ``include_online`` and
            the pairs' numbers of online samples differ or are 0.
    """
    responses: dict[str, list[list[list[int]]]] = {
        "chosen": [[p.chosen_ids] for p in pairs],
        "rejected": [[p.rejected_ids] for p in pairs],
    }
    if include_explore:
        missing = [p.index for p in pairs if p.explore_ids is None]
        if missing:
            raise ValueError(f"include_explore=True but pairs {missing[:5]} have no explore_ids")
        responses["explore"] = [[p.explore_ids] for p in pairs]
    if include_online:
        counts = {len(p.online_ids) if p.online_ids else 0 for p in pairs}
        if len(counts) != 1 or 0 in counts:
            raise ValueError(f"include_online=True needs the same number (>= 1) of online samples per pair, got {sorted(counts)}")
        responses["online"] = [list(p.online_ids) for p in pairs]
    blocks = tuple((role, len(responses[role][0]) if pairs else 1)
                   for role in PREFERENCE_FIELDS.roles if role in responses)
    sequences = [(p.prompt_ids, ids) for role, _ in blocks for p, per_pair in zip(pairs, responses[role])
                 for ids in per_pair]
    return sequences, RowLayout(len(pairs), blocks)


def collate_preference_rows(
    pairs: Sequence[TokenizedPair],
    pad_token_id: int,
    include_explore: bool = False,
    padding_side: str = "right",
    pad_to_multiple_of: int | None = None,
    include_online: bool = False,
    packing: PackingLayout | None = None,
) -> tuple[AnySequenceBatch, RowLayout]:
    """All responses of B pairs in one batch, for a single forward pass, with their row layout.

    The rows are those of :func:`preference_sequences` (chosen, rejected[, explore][, online]);
    ask the layout for a role's rows rather than counting them.

    Args:
        packing: None pads (see :func:`collate_sequences`); ``"rows"`` or ``"one_row"`` packs
            without padding (see :func:`selm.engine.packing.pack_sequences`; ``padding_side`` is
            then unused).

    Returns:
        (batch, layout): a SequenceBatch of N = ``layout.num_rows`` rows (see
        :func:`collate_sequences`), or with ``packing`` a PackedSequenceBatch of the same N
        sequences in the same order.

    Raises:
        ValueError: see :func:`preference_sequences`.
    """
    sequences, layout = preference_sequences(pairs, include_explore, include_online)
    if packing is not None:
        return pack_sequences(sequences, pad_token_id, packing, pad_to_multiple_of), layout
    return collate_sequences(sequences, pad_token_id, padding_side, pad_to_multiple_of), layout


def collate_preference_batch(pairs: Sequence[TokenizedPair], pad_token_id: int, **options: Any) -> AnySequenceBatch:
    """The batch of :func:`collate_preference_rows` (same ``options``) without its layout: rows
    0..B−1 prompt+chosen, B..2B−1 prompt+rejected, then explore and online blocks as requested."""
    return collate_preference_rows(pairs, pad_token_id, **options)[0]
