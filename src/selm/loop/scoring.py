"""No-grad log-probs the round loop needs besides training, all through :func:`selm.engine.score_sequences`:
π0's log-probs of the held-out samples (for the KL), the pairs' log-probs before and after a round's
training (for the log-prob shift diagnostics), OSP's self-scores of the candidates; and an ensemble
judge's scores with its members' statistics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from selm.artifacts import SampleRow
from selm.data import TokenizedPair
from selm.engine import ReferencePolicy, score_sequences


def sequence_logps(model: torch.nn.Module | ReferencePolicy, sequences: Sequence[tuple[list[int], list[int]]],
                   pad_token_id: int, chunk_size: int) -> list[float]:
    """log π(y | x) of each (prompt ids, response ids), summed over the response, nats; [N] as floats.

    Batches of the engine's default size, in order.
    """
    return score_sequences(model, sequences, pad_token_id, chunk_size=chunk_size).tolist()


def pair_logps(model: torch.nn.Module, pairs: Sequence[TokenizedPair], pad_token_id: int, *, batch_size: int,
               chunk_size: int, device: torch.device | str) -> dict[str, torch.Tensor]:
    """Summed log-probs of every pair's chosen and rejected response under ``model`` (no grad).

    Each forward holds ``batch_size`` pairs, their chosen responses then their rejected ones (the
    trainer's row layout, so the values are the trainer's reference log-probs bit for bit).

    Returns:
        ``{"chosen": [P], "rejected": [P]}`` float32 on the CPU, nats, in the order of ``pairs``.
    """
    blocks = [pairs[start:start + batch_size] for start in range(0, len(pairs), batch_size)]
    sequences: list[tuple[list[int], list[int]]] = []
    for block in blocks:
        sequences += [(p.prompt_ids, p.chosen_ids) for p in block] + [(p.prompt_ids, p.rejected_ids) for p in block]
    logps = score_sequences(model, sequences, pad_token_id, batch_size=2 * batch_size, chunk_size=chunk_size,
                            device=device)
    chosen, rejected, start = [], [], 0
    for block in blocks:
        chosen.append(logps[start:start + len(block)])
        rejected.append(logps[start + len(block):start + 2 * len(block)])
        start += 2 * len(block)
    return {"chosen": torch.cat(chosen) if chosen else torch.zeros(0),
            "rejected": torch.cat(rejected) if rejected else torch.zeros(0)}


def self_scores(model: torch.nn.Module, samples: Sequence[SampleRow], pad_token_id: int,
                chunk_size: int) -> list[list[float]]:
    """OSP's self-judgement: each candidate's mean token log-prob under ``model``, nats per token.

    Returns:
        ``scores[i][j]`` for candidate j of sample i.
    """
    sequences = [(s.prompt_ids, x.token_ids) for s in samples for x in s.candidates]
    logps = score_sequences(model, sequences, pad_token_id, chunk_size=chunk_size)
    lengths = torch.tensor([len(ids) for _, ids in sequences], dtype=torch.long)
    flat = iter((logps / lengths.clamp_min(1)).tolist())
    return [[next(flat) for _ in s.candidates] for s in samples]


def ensemble_scores(shards: Sequence[Any]) -> tuple[list[list[float]], dict[str, float]]:
    """An ensemble judge's scores of every candidate, and its members' statistics (reward-robust RLHF).

    Args:
        shards: the ``MemberScores`` of each process's shard of prompts, in order.

    Returns:
        (scores[P][K_i], stats): ``judge/member_<j>_mean`` (member j's mean score over every
        candidate), ``judge/spread_mean`` (the mean over candidates of the members' std), reward units.
    """
    scores = [row for shard in shards for row in shard.scores]
    members = [item for shard in shards for candidates in shard.members for item in candidates]
    spreads = [x for shard in shards for row in shard.spread for x in row]
    stats = {f"judge/member_{j}_mean": sum(column) / len(column) for j, column in enumerate(zip(*members))}
    if spreads:
        stats["judge/spread_mean"] = sum(spreads) / len(spreads)
    return scores, stats
