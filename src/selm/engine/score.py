"""Scoring many sequences without gradients: the one batched no-grad loop of the engine."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from selm.engine.batch import SequenceStats
from selm.engine.features import FeatureProbe
from selm.engine.packing import PackingLayout, pack_sequences
from selm.engine.padding import collate_sequences
from selm.engine.sequence_stats import ReferencePolicy, sequence_stats
from selm.engine.stats_model import SequenceStatsModel
from selm.progress import progress_bar

# Sequences per forward when the caller does not say: small enough for a 262k vocabulary's
# hidden states, large enough to keep the decoder's GEMMs busy.
DEFAULT_SCORE_BATCH = 64


def score_sequences(
    model: torch.nn.Module | ReferencePolicy,
    sequences: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_token_id: int,
    *,
    batch_size: int = DEFAULT_SCORE_BATCH,
    chunk_size: int = 1024,
    device: torch.device | str | None = None,
    packing: PackingLayout | None = None,
    progress: bool = False,
    desc: str = "scoring",
) -> torch.Tensor:
    """Summed response log-probs of N (prompt ids, response ids) sequences, in eval mode, no grad.

    Args:
        model: a causal LM, a :class:`SequenceStatsModel` (the trainer's, possibly sharded: every
            process must then score the same number of batches), or a :class:`ReferencePolicy` of
            either (run with its adapters disabled where configured). Its train/eval mode is
            restored afterwards.
        sequences: N pairs of token id lists; every prompt non-empty.
        pad_token_id: the tokenizer's pad id.
        batch_size: sequences per forward.
        chunk_size: output-layer chunk, see :func:`sequence_stats`.
        device: where the batches go; default the model's first parameter's device.
        packing: None pads each batch; ``"rows"`` / ``"one_row"`` packs it (same values up to
            float rounding).
        progress: show a progress bar over batches.

    Returns:
        [N] float32 on the CPU: Σ_t log π(y_t | x, y_<t) over each response, nats.
    """
    out = [stats.logps.float().cpu() for stats in _scored_batches(
        model, sequences, pad_token_id, batch_size=batch_size, chunk_size=chunk_size, device=device,
        packing=packing, progress=progress, desc=desc)]
    return torch.cat(out) if out else torch.zeros(0)


@dataclass
class TokenScores:
    """Per-token statistics of N responses, one [T_i] float32 CPU tensor per response.

    Attributes:
        logps: log π(y_t | x, y_<t) of each response token, nats.
        values: the value head's V(x, y_<t) of each token, reward units; None without a head.
    """

    logps: list[torch.Tensor]
    values: list[torch.Tensor] | None = None


def score_tokens(
    model: torch.nn.Module | ReferencePolicy,
    sequences: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_token_id: int,
    *,
    value_head: torch.nn.Module | None = None,
    batch_size: int = DEFAULT_SCORE_BATCH,
    chunk_size: int = 1024,
    device: torch.device | str | None = None,
    packing: PackingLayout | None = None,
    progress: bool = False,
    desc: str = "scoring tokens",
) -> TokenScores:
    """Per-token log-probs (and values of ``value_head``) of N sequences' responses, no grad.

    The rollout trainer's one pass before its update epochs: the reference's log-probs, the
    sampling policy's when the sampler did not record them, and the critic's values. Arguments
    as :func:`score_sequences`; ``value_head`` is a critic as :func:`sequence_stats` takes it.

    Returns:
        TokenScores with N tensors of shape [len(response_i)].
    """
    logps: list[torch.Tensor] = []
    values: list[torch.Tensor] = []
    for stats in _scored_batches(model, sequences, pad_token_id, batch_size=batch_size, chunk_size=chunk_size,
                                 device=device, packing=packing, progress=progress, desc=desc, per_token=True,
                                 value_head=value_head):
        lengths = stats.lengths.tolist()
        logps += [row[:n].float().cpu() for row, n in zip(stats.token_logps, lengths)]
        if stats.values is not None:
            values += [row[:n].float().cpu() for row, n in zip(stats.values, lengths)]
    return TokenScores(logps, values if value_head is not None else None)


def score_with_features(
    model: torch.nn.Module | ReferencePolicy,
    sequences: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_token_id: int,
    features: FeatureProbe,
    *,
    batch_size: int = DEFAULT_SCORE_BATCH,
    chunk_size: int = 1024,
    device: torch.device | str | None = None,
    packing: PackingLayout | None = None,
    progress: bool = False,
    desc: str = "scoring",
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`score_sequences` and, from the same forwards, each response's pooled sparse-autoencoder
    features (see :func:`sequence_stats`'s ``features``). Arguments as :func:`score_sequences`.

    Returns:
        ([N] summed response log-probs, nats; [N, F] pooled features), float32 on the CPU.
    """
    logps: list[torch.Tensor] = []
    pooled: list[torch.Tensor] = []
    for stats in _scored_batches(model, sequences, pad_token_id, batch_size=batch_size, chunk_size=chunk_size,
                                 device=device, packing=packing, progress=progress, desc=desc, features=features):
        logps.append(stats.logps.float().cpu())
        pooled.append(stats.features.float().cpu())
    if not logps:
        return torch.zeros(0), torch.zeros(0, features.sae.width)
    return torch.cat(logps), torch.cat(pooled)


@torch.no_grad()
def _scored_batches(model: torch.nn.Module | ReferencePolicy, sequences: Sequence[tuple[Sequence[int], Sequence[int]]],
                    pad_token_id: int, *, batch_size: int, chunk_size: int, device: torch.device | str | None,
                    packing: PackingLayout | None, progress: bool, desc: str,
                    **stat_options: Any) -> Iterator[SequenceStats]:
    """The engine's statistics of ``sequences``, ``batch_size`` at a time, in eval mode."""
    reference = model if isinstance(model, ReferencePolicy) else ReferencePolicy(model)
    if device is None:
        device = next(reference.model.parameters()).device
    was_training = reference.model.training
    reference.model.eval()
    try:
        with reference.active() as active:
            starts = range(0, len(sequences), batch_size)
            for start in progress_bar(starts, desc=desc, unit="batch", disable=not progress, leave=False):
                chunk = list(sequences[start:start + batch_size])
                batch = (pack_sequences(chunk, pad_token_id, packing) if packing is not None
                         else collate_sequences(chunk, pad_token_id))
                batch = batch.to(device)
                yield (active(batch, chunk_size=chunk_size, **stat_options) if isinstance(active, SequenceStatsModel)
                       else sequence_stats(active, batch, chunk_size=chunk_size, **stat_options))
    finally:
        reference.model.train(was_training)
