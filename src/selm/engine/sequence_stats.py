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

import torch
from torch.utils.checkpoint import checkpoint

from selm.engine.batch import AnySequenceBatch, SequenceBatch, SequenceStats
from selm.engine.features import FeatureProbe, hidden_layers, pooled_features
from selm.engine.head import linear_token_logprobs

# At most this many logits per chunk (32 MB in float32): the number of positions per chunk
# shrinks as the vocabulary grows, so the engine's peak memory stays flat in V.
MAX_CHUNK_LOGITS = 2**23


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


def unwrap_causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    """The causal-LM module under DDP/FSDP/PEFT wrappers (LoRA layers stay injected in it)."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _output_head(model: torch.nn.Module) -> tuple[torch.nn.Module, float | None]:
    lm = unwrap_causal_lm(model)
    head = lm.get_output_embeddings()
    softcap = getattr(getattr(lm, "config", None), "final_logit_softcapping", None)
    return head, softcap


def response_hidden_states(model: torch.nn.Module, batch: AnySequenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the decoder and keep the hidden states that predict response tokens.

    Works on padded and packed batches alike: within a row, the hidden state at position t−1
    predicts the token at t, and a sequence's first token is always a prompt token, so no scored
    position reads across a boundary between packed sequences.

    Returns:
        hidden: [M, H] hidden state at position t−1 for every response token at position t,
            in row-major order over (row, position).
        targets: [M] the response token ids they predict.
    """
    hidden, _ = decoder_states(model, batch)
    predict = batch.response_mask[:, 1:]
    return hidden[:, :-1][predict], batch.input_ids[:, 1:][predict]


def decoder_states(model: torch.nn.Module, batch: AnySequenceBatch,
                    layer: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One decoder forward: the last hidden states [R, T, H] and, with ``layer``,
    ``hidden_states[layer]`` [R, T, H] (0: the embeddings, L: the last layer's output after the
    final norm, which is the first tensor itself; another layer asks transformers for every layer's)."""
    lm = unwrap_causal_lm(model)
    inner = layer is not None and layer != hidden_layers(lm)
    out = lm.get_decoder()(**batch.decoder_inputs(), use_cache=False, output_hidden_states=inner)
    last = out[0] if isinstance(out, tuple) else out.last_hidden_state
    if layer is None:
        return last, None
    return last, (out.hidden_states[layer] if inner else last)


def _head_logits(head: torch.nn.Module, softcap: float | None, hidden: torch.Tensor) -> torch.Tensor:
    # At least float32 for the log-softmax; a float64 model (tests) stays float64.
    logits = head(hidden)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


def _chunk_stats(hidden: torch.Tensor, targets: torch.Tensor, ref_logp_full: torch.Tensor | None,
                 head: torch.nn.Module, softcap: float | None, with_entropy: bool, ratio_clip: float | None = None,
                 termination_token_id: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token log-prob, entropy, KL(ref ‖ policy), clipped-ratio-weighted log-prob and log-prob
    of ``termination_token_id`` (whatever the target) for one chunk; each [c] (zeros if unused)."""
    logp_full = torch.log_softmax(_head_logits(head, softcap, hidden), dim=-1)
    token_logp = logp_full.gather(-1, targets[:, None]).squeeze(-1)
    zero = torch.zeros_like(token_logp)
    entropy = -(logp_full.exp() * logp_full).sum(-1) if with_entropy else zero
    termination = logp_full[:, termination_token_id] if termination_token_id is not None else zero
    kl = (ref_logp_full.exp() * (ref_logp_full - logp_full)).sum(-1) if ref_logp_full is not None else zero
    clipped = zero
    if ratio_clip is not None:
        ref_token_logp = ref_logp_full.gather(-1, targets[:, None]).squeeze(-1)
        # A per-token importance weight: a constant for the gradient (detached), as in A-LoL seq.
        ratio = torch.exp(token_logp.detach() - ref_token_logp).clamp(1 - ratio_clip, 1 + ratio_clip)
        clipped = ratio * token_logp
    return token_logp, entropy, kl, clipped, termination


def sequence_stats(
    model: torch.nn.Module,
    batch: AnySequenceBatch,
    *,
    chunk_size: int = 1024,
    with_entropy: bool = False,
    reference: ReferencePolicy | None = None,
    ratio_clip: float | None = None,
    head_grad_into_param: bool = False,
    per_token: bool = False,
    value_head: torch.nn.Module | None = None,
    termination_token_id: int | None = None,
    features: FeatureProbe | None = None,
) -> SequenceStats:
    """Summed response log-probs (and optionally entropy and KL to a reference) for N sequences.

    Args:
        model: a causal LM (transformers, possibly PEFT- or DDP-wrapped).
        batch: the N sequences, padded or packed (same results up to float rounding); only
            positions where ``response_mask`` is True are scored.
        chunk_size: at most this many response positions per output-layer chunk; also capped at
            MAX_CHUNK_LOGITS / V positions, so peak extra memory is a few times 32 MB whatever V.
        with_entropy: also return Σ_t entropy of the policy over response tokens.
        reference: when given, also return Σ_t KL(π_ref ‖ π) over response tokens (TDPO). The
            reference runs without gradient.
        ratio_clip: ε in [0, 1); with ``reference``, also return Σ_t clip(sg[π(y_t)/π_ref(y_t)],
            1−ε, 1+ε)·log π(y_t) over response tokens (A-LoL seq; the ratio carries no gradient).
        head_grad_into_param: for ``loss.backward()`` with a tied, ``sparse=True`` input
            embedding: the output layer adds its weight gradient straight into ``.grad`` (see
            ``selm.engine.head``), so no second [V, H] gradient is built. Not for
            ``torch.autograd.grad``.
        per_token: also return the per-token log-probs (and entropies with ``with_entropy``) as
            [N, T] matrices (the rollout objectives' input).
        value_head: PPO's critic, called as ``value_head(hidden, batch)`` with the policy's hidden
            states [M, H] that predict the response tokens; returns their values [M] (a head on
            the policy's trunk reads ``hidden``, a separate value model runs on ``batch``). When
            given, also return the per-token values [N, T].
        termination_token_id: when given (EOS), also return log π(EOS | x, y_<t) at every response
            position t as [N, T] (GFlowNet fine-tuning: the probability of ending the response
            there); one column of the log-softmax the chunk computes anyway, but it needs the
            full [c, V] log-probs, so the fused log-prob-only output layer is not used.
        features: when given, also return each response's sparse-autoencoder code of
            ``hidden_states[features.layer]`` mean-pooled over the |y| positions that predict its
            tokens, [N, F] (FPO; see ``selm.engine.features``), from the same decoder forward.

    Returns:
        SequenceStats with [N] tensors; gradients flow into ``logps`` (and ``entropy``/``kl``/
        ``clipped_ratio_logps``).
    """
    if ratio_clip is not None and reference is None:
        raise ValueError("sequence_stats: ratio_clip needs a reference")
    head, softcap = _output_head(model)
    full, layer_states = decoder_states(model, batch, features.layer if features is not None else None)
    predict = batch.response_mask[:, 1:]
    hidden, targets = full[:, :-1][predict], batch.input_ids[:, 1:][predict]
    ref_hidden = None
    if reference is not None:
        with torch.no_grad(), reference.active() as ref_model:
            ref_hidden, _ = response_hidden_states(ref_model, batch)
            ref_head, ref_softcap = _output_head(ref_model)
    seq_index = batch.response_sequence_index()
    n = batch.num_sequences
    grad = torch.is_grad_enabled() and hidden.requires_grad
    chunk_size = max(1, min(chunk_size, MAX_CHUNK_LOGITS // head.out_features))

    token_logps, entropies, kls, clipped_logps, terminations = [], [], [], [], []
    # Log-probs only (every objective but TDPO's KL) through a plain linear head: the fused output
    # layer keeps one [V, H] weight gradient instead of one per chunk (see selm.engine.head).
    # Not for a DeepSpeed ZeRO-3 weight (``ds_id``): it is gathered only inside the head's own
    # forward, and the fused kernel reads it outside, in its backward too.
    fused = (not with_entropy and ref_hidden is None and termination_token_id is None
             and type(head) is torch.nn.Linear and head.bias is None and not hasattr(head.weight, "ds_id"))
    if fused:
        token_logps.append(linear_token_logprobs(hidden, head.weight, targets, softcap, chunk_size,
                                                 accumulate_grad=head_grad_into_param))
    for start in range(0, 0 if fused else hidden.shape[0], chunk_size):
        h = hidden[start:start + chunk_size]
        t = targets[start:start + chunk_size]
        ref_logp = None
        if ref_hidden is not None:
            with torch.no_grad(), reference.active():
                ref_logp = torch.log_softmax(
                    _head_logits(ref_head, ref_softcap, ref_hidden[start:start + chunk_size]), dim=-1)
        if grad:
            lp, ent, kl, clipped, term = checkpoint(_chunk_stats, h, t, ref_logp, head, softcap, with_entropy,
                                                    ratio_clip, termination_token_id, use_reentrant=False)
        else:
            lp, ent, kl, clipped, term = _chunk_stats(h, t, ref_logp, head, softcap, with_entropy, ratio_clip,
                                                      termination_token_id)
        token_logps.append(lp)
        entropies.append(ent)
        kls.append(kl)
        clipped_logps.append(clipped)
        terminations.append(term)

    def concat(values: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(values) if values else hidden.new_zeros(0, dtype=torch.float32)

    def per_sequence(values: list[torch.Tensor]) -> torch.Tensor:
        flat = concat(values)
        return torch.zeros(n, dtype=flat.dtype, device=flat.device).index_add(0, seq_index, flat)

    lengths = batch.response_lengths()
    matrix = (_TokenMatrix(seq_index, n) if per_token or value_head is not None or termination_token_id is not None
              else None)
    values = None
    if value_head is not None:
        values = value_head(hidden, batch).reshape(-1)
        values = matrix(values.to(torch.promote_types(values.dtype, torch.float32)))
    pooled = None
    if features is not None:
        pooled = pooled_features(features.sae, layer_states[:, :-1][predict], seq_index, n)
    return SequenceStats(
        logps=per_sequence(token_logps),
        lengths=lengths,
        entropy=per_sequence(entropies) if with_entropy else None,
        kl=per_sequence(kls) if reference is not None else None,
        clipped_ratio_logps=per_sequence(clipped_logps) if ratio_clip is not None else None,
        token_logps=matrix(concat(token_logps)) if per_token else None,
        token_entropies=matrix(concat(entropies)) if per_token and with_entropy else None,
        values=values,
        termination_token_logps=matrix(concat(terminations)) if termination_token_id is not None else None,
        features=pooled,
    )


class _TokenMatrix:
    """Lays the engine's flat per-token values [M] out as [N, T]: row = sequence, column = the
    token's place in its response, 0 past a response's end.

    A sequence's response tokens are consecutive in the flat order (one row of a padded batch,
    one stretch of a packed row), so a token's column is its flat index minus its sequence's first.
    """

    def __init__(self, seq_index: torch.Tensor, n: int):
        positions = torch.arange(seq_index.shape[0], device=seq_index.device)
        first = torch.full((n,), seq_index.shape[0], dtype=torch.long, device=seq_index.device)
        first = first.scatter_reduce(0, seq_index, positions, "amin")
        self.index = (seq_index, positions - first[seq_index])
        self.shape = (n, int(self.index[1].max()) + 1 if seq_index.numel() else 0)

    def __call__(self, flat: torch.Tensor) -> torch.Tensor:
        return flat.new_zeros(self.shape).index_put(self.index, flat)


def naive_sequence_logps(model: torch.nn.Module, batch: SequenceBatch) -> torch.Tensor:
    """Reference implementation: full [N, T, V] logits, then gather. [N] summed response log-probs.

    Kept as the ground truth for tests and as the naive floor in benchmarks; never used to train.
    """
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                   position_ids=batch.position_ids, use_cache=False).logits
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    return (logp * batch.response_mask[:, 1:]).sum(-1)
