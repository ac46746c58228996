"""The log-prob engine: (model, token batch) -> per-sequence statistics.

The full [N, T, V] logits tensor is never built. The decoder runs once over the batch; only the
hidden states at positions that predict a response token are kept ([M, H], M = number of response
tokens), and the output layer + log-softmax run over chunks of those positions. Under autograd
each chunk is checkpointed, so the backward pass recomputes one chunk's [chunk, V] logits at a
time instead of storing all of them: peak memory grows with the chunk size, not with N·T·V.
This is what lets 150k–260k vocabularies fit, and it skips prompt and padding positions entirely.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

# At most this many logits per chunk (32 MB in float32): the number of positions per chunk
# shrinks as the vocabulary grows, so the engine's peak memory stays flat in V.
MAX_CHUNK_LOGITS = 2**23


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


@dataclass
class SequenceStats:
    """Per-sequence statistics over response tokens.

    Attributes:
        logps: [N] Σ_t log π(y_t | x, y_<t) over response tokens, nats.
        lengths: [N] number of response tokens.
        entropy: [N] Σ_t H(π(·| x, y_<t)) over response tokens (nats), or None.
        kl: [N] Σ_t KL(π_ref(·|…) ‖ π(·|…)) over response tokens (nats), or None.
    """

    logps: torch.Tensor
    lengths: torch.Tensor
    entropy: torch.Tensor | None = None
    kl: torch.Tensor | None = None


class ReferencePolicy:
    """The reference π_ref: a separate frozen model, or the policy itself with its LoRA adapters
    disabled (no second copy of the weights in memory)."""

    def __init__(self, model: torch.nn.Module, disable_adapters: bool = False):
        self.model = model
        self.disable_adapters = disable_adapters

    @contextlib.contextmanager
    def active(self) -> Iterator[torch.nn.Module]:
        """Yield the module to run as the reference (adapters disabled where configured)."""
        if self.disable_adapters:
            with self.model.disable_adapter():
                yield self.model
        else:
            yield self.model


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The causal-LM module under DDP/FSDP/PEFT wrappers (LoRA layers stay injected in it)."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _output_head(model: torch.nn.Module) -> tuple[torch.nn.Module, float | None]:
    lm = _unwrap(model)
    head = lm.get_output_embeddings()
    softcap = getattr(getattr(lm, "config", None), "final_logit_softcapping", None)
    return head, softcap


def response_hidden_states(model: torch.nn.Module, batch: SequenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the decoder and keep the hidden states that predict response tokens.

    Returns:
        hidden: [M, H] hidden state at position t−1 for every response token at position t,
            in row-major order over (sequence, position).
        targets: [M] the response token ids they predict.
    """
    lm = _unwrap(model)
    decoder = lm.get_decoder()
    out = decoder(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
    )
    hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
    predict = batch.response_mask[:, 1:]
    return hidden[:, :-1][predict], batch.input_ids[:, 1:][predict]


def _head_logits(head: torch.nn.Module, softcap: float | None, hidden: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


def _chunk_stats(hidden: torch.Tensor, targets: torch.Tensor, ref_logp_full: torch.Tensor | None,
                 head: torch.nn.Module, softcap: float | None, with_entropy: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token log-prob, entropy and KL(ref ‖ policy) for one chunk; each [c] (zeros if unused)."""
    logp_full = torch.log_softmax(_head_logits(head, softcap, hidden), dim=-1)
    token_logp = logp_full.gather(-1, targets[:, None]).squeeze(-1)
    zero = torch.zeros_like(token_logp)
    entropy = -(logp_full.exp() * logp_full).sum(-1) if with_entropy else zero
    kl = (ref_logp_full.exp() * (ref_logp_full - logp_full)).sum(-1) if ref_logp_full is not None else zero
    return token_logp, entropy, kl


def sequence_stats(
    model: torch.nn.Module,
    batch: SequenceBatch,
    *,
    chunk_size: int = 1024,
    with_entropy: bool = False,
    reference: ReferencePolicy | None = None,
) -> SequenceStats:
    """Summed response log-probs (and optionally entropy and KL to a reference) for N sequences.

    Args:
        model: a causal LM (transformers, possibly PEFT- or DDP-wrapped).
        batch: the N sequences; only positions where ``response_mask`` is True are scored.
        chunk_size: at most this many response positions per output-layer chunk; also capped at
            MAX_CHUNK_LOGITS / V positions, so peak extra memory is a few times 32 MB whatever V.
        with_entropy: also return Σ_t entropy of the policy over response tokens.
        reference: when given, also return Σ_t KL(π_ref ‖ π) over response tokens (TDPO). The
            reference runs without gradient.

    Returns:
        SequenceStats with [N] tensors; gradients flow into ``logps`` (and ``entropy``/``kl``).
    """
    head, softcap = _output_head(model)
    hidden, targets = response_hidden_states(model, batch)
    ref_hidden = None
    if reference is not None:
        with torch.no_grad(), reference.active() as ref_model:
            ref_hidden, _ = response_hidden_states(ref_model, batch)
            ref_head, ref_softcap = _output_head(ref_model)
    seq_index = batch.response_mask[:, 1:].nonzero()[:, 0]
    n = batch.num_sequences
    grad = torch.is_grad_enabled() and hidden.requires_grad
    chunk_size = max(1, min(chunk_size, MAX_CHUNK_LOGITS // head.out_features))

    token_logps, entropies, kls = [], [], []
    for start in range(0, hidden.shape[0], chunk_size):
        h = hidden[start:start + chunk_size]
        t = targets[start:start + chunk_size]
        ref_logp = None
        if ref_hidden is not None:
            with torch.no_grad(), reference.active():
                ref_logp = torch.log_softmax(
                    _head_logits(ref_head, ref_softcap, ref_hidden[start:start + chunk_size]), dim=-1)
        if grad:
            lp, ent, kl = checkpoint(_chunk_stats, h, t, ref_logp, head, softcap, with_entropy,
                                     use_reentrant=False)
        else:
            lp, ent, kl = _chunk_stats(h, t, ref_logp, head, softcap, with_entropy)
        token_logps.append(lp)
        entropies.append(ent)
        kls.append(kl)

    def per_sequence(values: list[torch.Tensor]) -> torch.Tensor:
        flat = torch.cat(values) if values else hidden.new_zeros(0, dtype=torch.float32)
        return torch.zeros(n, dtype=flat.dtype, device=flat.device).index_add(0, seq_index, flat)

    lengths = batch.response_mask[:, 1:].sum(-1)
    return SequenceStats(
        logps=per_sequence(token_logps),
        lengths=lengths,
        entropy=per_sequence(entropies) if with_entropy else None,
        kl=per_sequence(kls) if reference is not None else None,
    )


def naive_sequence_logps(model: torch.nn.Module, batch: SequenceBatch) -> torch.Tensor:
    """Reference implementation: full [N, T, V] logits, then gather. [N] summed response log-probs.

    Kept as the ground truth for tests and as the naive floor in benchmarks; never used to train.
    """
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                   position_ids=batch.position_ids, use_cache=False).logits.float()
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    return (logp * batch.response_mask[:, 1:]).sum(-1)
