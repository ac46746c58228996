"""The log-prob engine: (model, token batch) -> per-sequence statistics, never full [B, T, V] logits.

PLACEHOLDER: SequenceBatch is the contract shared with ``selm.data``; the engine is being written.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SequenceBatch:
    """N prompt+response sequences, padded to length T.

    Attributes:
        input_ids: [N, T] token ids (prompt followed by response, padding where attention_mask is 0).
        attention_mask: [N, T] 1 for real tokens, 0 for padding.
        response_mask: [N, T] bool, True exactly at the positions of response tokens (the tokens
            whose log-prob is scored); False on prompt tokens and padding.
        position_ids: [N, T] positions counted from each sequence's first real token (0, 1, ...);
            padding positions hold 0. Works for left or right padding.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    position_ids: torch.Tensor

    def to(self, device: torch.device | str) -> "SequenceBatch":
        return SequenceBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask,
                                                        self.response_mask, self.position_ids)))

    @property
    def num_sequences(self) -> int:
        return int(self.input_ids.shape[0])
