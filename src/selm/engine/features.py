"""Sparse-autoencoder features of a response, mean-pooled: FPO's c̄(x, y), from the engine's own forward.

The positions pooled are those the engine reads log-probs from: the hidden state at t−1 for every
response token at t (the last prompt token up to the response's second-to-last token), |y|
positions per response, as in the authors' code (FeatureAlignment, ``fpo_get_batch_logps``).
Prompt, padding and packing filler never enter the mean: it divides by |y|, not by the padded
length the authors' code divides by.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import torch

from selm.modeling.loading import model_fingerprint
from selm.modeling.sae import TopKSparseAutoencoder

# At most this many pre-activations per encoder chunk (32 MB in float32), whatever the width.
MAX_CHUNK_PREACTS = 2**23


def hidden_layers(lm: torch.nn.Module) -> int:
    """L, the decoder layers of a (bare, unwrapped) causal LM: its ``hidden_states`` run from 0
    (the embeddings) to L (the last layer's output)."""
    return int(lm.config.get_text_config().num_hidden_layers)


@dataclass(frozen=True, eq=False)
class FeatureProbe:
    """What the engine reads features with: a frozen autoencoder of ``hidden_states[layer]``.

    Attributes:
        sae: the autoencoder (its parameters need no gradient; the policy's hidden states do).
        layer: the index into the model's ``hidden_states``: 0 the embeddings, L the last layer's
            output (after the final norm, as transformers returns it).
    """

    sae: TopKSparseAutoencoder
    layer: int

    @cached_property
    def key(self) -> str:
        """sha256 over the layer and the autoencoder's weights: what a cache of its features is keyed by."""
        return hashlib.sha256(f"{self.layer}:{self.sae.k}:{model_fingerprint(self.sae)}".encode()).hexdigest()


def pooled_features(sae: TopKSparseAutoencoder, hidden: torch.Tensor, sequence_index: torch.Tensor,
                    num_sequences: int) -> torch.Tensor:
    """c̄: the mean of the codes of each sequence's positions.

    Args:
        sae: the autoencoder.
        hidden: [M, H] the hidden states pooled over (each row one position).
        sequence_index: [M] the sequence 0..N−1 of each row.
        num_sequences: N.

    Returns:
        [N, F] mean code per sequence (0 for a sequence with no rows), in the wider of the hidden
        states' dtype and float32; differentiable in ``hidden`` through the k kept features of
        each row. The dense [M, F] codes are never built.
    """
    width = sae.width
    counts = torch.zeros(num_sequences, dtype=torch.long, device=hidden.device).index_add_(
        0, sequence_index, torch.ones_like(sequence_index))
    dtype = torch.promote_types(hidden.dtype, torch.float32)
    pooled = torch.zeros(num_sequences * width, dtype=dtype, device=hidden.device)
    rows = max(1, MAX_CHUNK_PREACTS // width)
    for start in range(0, hidden.shape[0], rows):
        values, indices = sae.encode_topk(hidden[start:start + rows].to(dtype))
        seq = sequence_index[start:start + rows]
        weight = 1.0 / counts[seq].to(dtype)
        pooled = pooled.index_add(0, (seq[:, None] * width + indices).reshape(-1),
                                  (values.to(dtype) * weight[:, None]).reshape(-1))
    return pooled.view(num_sequences, width)
