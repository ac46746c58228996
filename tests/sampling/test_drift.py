"""logprob_drift against log-probs computed by hand (float64 full forwards)."""

from dataclasses import replace

import pytest
import torch

from selm.sampling import HFSampler, SamplingParams
from selm.sampling.drift import logprob_drift

TEXTS = ["The quick brown fox", "hi", "sort: 3 1 2 ->"]


def by_hand(model, prompt: list[int], completion: list[int]) -> float:  # type: ignore[no-untyped-def]
    """Σ log π(completion | prompt) from one float64 forward (nats)."""
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logp = torch.log_softmax(model.double()(ids).logits[0, :-1], dim=-1)
    model.float()
    return float(logp.gather(1, ids[0, 1:, None]).squeeze(1)[len(prompt) - 1:].sum())


def test_drift_is_the_per_token_gap_to_the_trainer(model, tokenizer) -> None:  # type: ignore[no-untyped-def]
    prompts = [tokenizer(t).input_ids for t in TEXTS]
    out = HFSampler(model, tokenizer, progress=False).generate(
        prompts, SamplingParams(n=2, temperature=1.0, max_new_tokens=6, seed=0))
    # Pretend a backend reported log-probs off by known amounts: +0.3 nats on one completion,
    # −0.6 on another, exact (the hand-computed value) everywhere else.
    reported = [[replace(c, logprob=by_hand(model, p, c.token_ids)) for c in cs] for p, cs in zip(prompts, out)]
    reported[0][1] = replace(reported[0][1], logprob=reported[0][1].logprob + 0.3)
    reported[2][0] = replace(reported[2][0], logprob=reported[2][0].logprob - 0.6)
    drift = logprob_drift(model, tokenizer.pad_token_id, prompts, reported, batch_size=4)
    gaps = [0.3 / reported[0][1].num_tokens, 0.6 / reported[2][0].num_tokens]
    assert drift["sampling/logprob_drift_sequences"] == 6
    assert drift["sampling/logprob_drift_mean"] == pytest.approx(sum(gaps) / 6, abs=1e-5)
    assert drift["sampling/logprob_drift_max"] == pytest.approx(max(gaps), abs=1e-5)
    assert logprob_drift(model, tokenizer.pad_token_id, prompts, reported, max_sequences=1)[
        "sampling/logprob_drift_max"] < 1e-5  # only the first completion, which is exact
    assert logprob_drift(model, tokenizer.pad_token_id, prompts, [[], [], []]) == {}
