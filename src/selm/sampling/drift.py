"""How far a sampler's reported log-probs are from the trainer's on the same tokens.

A backend other than transformers (vLLM) runs its own kernels, so the log π it reports for a
sampled completion can differ from what the trainer computes for the same tokens; a large gap
would bias anything that uses sampler log-probs (importance weights, KL estimates). This scores
the completions again with the trainer's engine (:func:`selm.engine.score_sequences`) and
summarises the gap per token.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from selm.engine import score_sequences
from selm.sampling.base import Completion


def logprob_drift(model: torch.nn.Module, pad_token_id: int, prompt_ids: Sequence[Sequence[int]],
                  completions: Sequence[Sequence[Completion]], *, max_sequences: int = 64,
                  batch_size: int = 16, chunk_size: int = 1024) -> dict[str, float]:
    """Per-token gap between the sampler's and the trainer's log-probs of sampled completions.

    For completion i with L_i tokens, d_i = |log π_sampler(y_i|x) − log π_trainer(y_i|x)| / L_i
    (nats per token, both summed over the completion's tokens at temperature 1).

    Args:
        model: the policy the completions were sampled from (its weights as in the sampler).
        pad_token_id: padding id for batching.
        prompt_ids: P prompts' token ids.
        completions: P lists of completions, as a sampler returns them.
        max_sequences: score at most this many non-empty completions (the first ones, in prompt
            order): the check needs a sample, not every completion.
        batch_size: sequences per forward.
        chunk_size: output-layer chunk of the engine.

    Returns:
        ``sampling/logprob_drift_mean`` and ``sampling/logprob_drift_max``: mean and max of d_i
        (nats/token), and ``sampling/logprob_drift_sequences``: how many were scored. Empty when
        there is nothing to score.
    """
    pairs = [(list(p), c) for p, cs in zip(prompt_ids, completions) for c in cs if c.num_tokens > 0]
    pairs = pairs[:max_sequences]
    if not pairs:
        return {}
    logps = score_sequences(model, [(p, c.token_ids) for p, c in pairs], pad_token_id, batch_size=batch_size,
                            chunk_size=chunk_size).double().tolist()
    gaps = [abs(c.logprob - lp) / c.num_tokens for (_, c), lp in zip(pairs, logps)]
    return {"sampling/logprob_drift_mean": sum(gaps) / len(gaps), "sampling/logprob_drift_max": max(gaps),
            "sampling/logprob_drift_sequences": len(gaps)}
