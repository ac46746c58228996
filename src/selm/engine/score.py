"""Scoring many sequences without gradients: the one batched no-grad loop of the engine."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from selm.engine.packing import PackingLayout, pack_sequences
from selm.engine.padding import collate_sequences
from selm.engine.sequence_stats import ReferencePolicy, sequence_stats

# Sequences per forward when the caller does not say: small enough for a 262k vocabulary's
# hidden states, large enough to keep the decoder's GEMMs busy.
DEFAULT_SCORE_BATCH = 64


@torch.no_grad()
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
        model: a causal LM, or a :class:`ReferencePolicy` (run with its adapters disabled where
            configured). Its train/eval mode is restored afterwards.
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
    reference = model if isinstance(model, ReferencePolicy) else ReferencePolicy(model)
    if device is None:
        device = next(reference.model.parameters()).device
    out: list[torch.Tensor] = []
    was_training = reference.model.training
    reference.model.eval()
    try:
        with reference.active() as active:
            starts = range(0, len(sequences), batch_size)
            for start in tqdm(starts, desc=desc, unit="batch", disable=not progress, leave=False):
                chunk = list(sequences[start:start + batch_size])
                batch = (pack_sequences(chunk, pad_token_id, packing) if packing is not None
                         else collate_sequences(chunk, pad_token_id))
                out.append(sequence_stats(active, batch.to(device), chunk_size=chunk_size).logps.float().cpu())
    finally:
        reference.model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)
