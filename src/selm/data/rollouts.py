"""Rollouts: sampled responses with their rewards, the RL objectives' training examples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TokenizedRollout:
    """One sampled response as a training example.

    Attributes:
        index: the row's place in the round's rollouts.
        prompt_ids: the prompt's token ids (non-empty).
        response_ids: the response's token ids, EOS included when it ended there.
        reward: the judge's reward, reward units (after any shaping).
        group: responses to the same prompt share it (the group estimators' unit).
        sampling_token_logps: log π_old(y_t | …) per response token as the sampler recorded it,
            nats; None when it must be recomputed (a separate sampling engine).
        reward_vector: [K] one reward per objective (a ``vector`` judge), or None.
        prefix_rewards: per response token t, the judge's score of the prefix before it,
            y_<t, as a complete response (t = 0: the empty response), reward units; None unless
            the objective reads them (GFlowNet fine-tuning).
    """

    index: int
    prompt_ids: list[int]
    response_ids: list[int]
    reward: float
    group: int
    sampling_token_logps: list[float] | None = None
    reward_vector: list[float] | None = None
    prefix_rewards: list[float] | None = None

    def __post_init__(self) -> None:
        if not self.prompt_ids or not self.response_ids:
            raise ValueError(f"rollout {self.index}: the prompt and the response need at least one token each")
        if self.sampling_token_logps is not None and len(self.sampling_token_logps) != len(self.response_ids):
            raise ValueError(f"rollout {self.index}: {len(self.sampling_token_logps)} sampling log-probs for "
                             f"{len(self.response_ids)} response tokens")
        if self.prefix_rewards is not None and len(self.prefix_rewards) != len(self.response_ids):
            raise ValueError(f"rollout {self.index}: {len(self.prefix_rewards)} prefix rewards for "
                             f"{len(self.response_ids)} response tokens")


def pad_token_rows(rows: Sequence[Sequence[float] | torch.Tensor], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """N per-token value lists of lengths T_i -> [N, max T_i], 0 past each row's end."""
    out = torch.zeros(len(rows), max((len(r) for r in rows), default=0), dtype=dtype)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.as_tensor(row, dtype=dtype)
    return out


def response_mask(lengths: Sequence[int] | torch.Tensor, width: int) -> torch.Tensor:
    """[N] lengths -> [N, width] bool, True on each row's first ``length`` columns."""
    lengths = torch.as_tensor(lengths)
    return torch.arange(width)[None, :] < lengths[:, None]
