"""The engine's batch types: padded or packed prompt+response sequences, and per-sequence statistics."""

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

    def decoder_inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments for the decoder's forward: the padding mask hides pad positions."""
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                "position_ids": self.position_ids}

    def response_sequence_index(self) -> torch.Tensor:
        """[M] the sequence (row) of each scored token, in the row-major order of ``response_mask[:, 1:]``."""
        return self.response_mask[:, 1:].nonzero()[:, 0]

    def response_lengths(self) -> torch.Tensor:
        """[N] number of response tokens of each sequence."""
        return self.response_mask[:, 1:].sum(-1)


@dataclass
class PackedSequenceBatch:
    """N prompt+response sequences laid end to end in R rows, with no padding between them.

    Every row starts with a sequence's first token; a row shorter than the widest one ends in a
    filler segment (``sequence_ids`` −1, positions 0, 1, ...), which is its own sequence for the
    attention and is never scored. There is no attention mask: transformers reads the sequence
    boundaries from where ``position_ids`` restart at 0 and builds a block-diagonal causal mask
    (sdpa, eager, flex) or variable-length flash-attention calls (those need R = 1). Whether a
    model really isolates the sequences is checked at run time by
    :func:`selm.train.packing_check.packing_mode`.

    Attributes:
        input_ids: [R, L] token ids.
        position_ids: [R, L] positions counted from each sequence's first token (0, 1, ...).
        response_mask: [R, L] bool, True exactly at response tokens.
        sequence_ids: [R, L] long, the sequence 0..N−1 each token belongs to; −1 on filler.
        num_sequences: N.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    response_mask: torch.Tensor
    sequence_ids: torch.Tensor
    num_sequences: int

    def to(self, device: torch.device | str) -> "PackedSequenceBatch":
        return PackedSequenceBatch(*(t.to(device) for t in (self.input_ids, self.position_ids,
                                                            self.response_mask, self.sequence_ids)),
                                   self.num_sequences)

    def decoder_inputs(self) -> dict[str, torch.Tensor | None]:
        """Keyword arguments for the decoder's forward. ``attention_mask`` must be None: given a 2D
        mask, transformers would not look for sequence boundaries in ``position_ids``."""
        return {"input_ids": self.input_ids, "attention_mask": None, "position_ids": self.position_ids}

    def response_sequence_index(self) -> torch.Tensor:
        """[M] the sequence of each scored token, in the row-major order of ``response_mask[:, 1:]``."""
        return self.sequence_ids[:, 1:][self.response_mask[:, 1:]]

    def response_lengths(self) -> torch.Tensor:
        """[N] number of response tokens of each sequence."""
        index = self.response_sequence_index()
        return torch.zeros(self.num_sequences, dtype=torch.long, device=index.device).index_add_(
            0, index, torch.ones_like(index))

    @property
    def num_tokens(self) -> int:
        """R·L: the token slots the decoder runs over (sequences plus filler)."""
        return int(self.input_ids.numel())


AnySequenceBatch = SequenceBatch | PackedSequenceBatch


@dataclass
class SequenceStats:
    """Per-sequence statistics over response tokens.

    Attributes:
        logps: [N] Σ_t log π(y_t | x, y_<t) over response tokens, nats.
        lengths: [N] number of response tokens.
        entropy: [N] Σ_t H(π(·| x, y_<t)) over response tokens (nats), or None.
        kl: [N] Σ_t KL(π_ref(·|…) ‖ π(·|…)) over response tokens (nats), or None.
        clipped_ratio_logps: [N] Σ_t clip(sg[π(y_t|…)/π_ref(y_t|…)], 1−ε, 1+ε)·log π(y_t|…) over
            response tokens (nats; A-LoL seq), or None.
        token_logps: [N, T] log π(y_t | x, y_<t) per response token, T the longest response,
            column t the response's t-th token, 0 past its end (``per_token``), or None.
        token_entropies: [N, T] H(π(·| x, y_<t)) per response token, nats, laid out like
            ``token_logps`` (``per_token`` with ``with_entropy``), or None.
        values: [N, T] V(x, y_<t), a value head on the hidden state that predicts token t,
            reward units, laid out like ``token_logps`` (``value_head``), or None.
        termination_token_logps: [N, T] log π(⊤ | x, y_<t), the log-prob of the termination
            token (EOS) at the state before response token t, nats, laid out like
            ``token_logps`` (``termination_token_id``), or None.
        features: [N, F] a sparse autoencoder's codes of the hidden states that predict the
            response's tokens, mean-pooled over its |y| positions, activation units
            (``features``; FPO's c̄), or None.
    """

    logps: torch.Tensor
    lengths: torch.Tensor
    entropy: torch.Tensor | None = None
    kl: torch.Tensor | None = None
    clipped_ratio_logps: torch.Tensor | None = None
    token_logps: torch.Tensor | None = None
    token_entropies: torch.Tensor | None = None
    values: torch.Tensor | None = None
    termination_token_logps: torch.Tensor | None = None
    features: torch.Tensor | None = None
