"""Padding-free packing vs padding on skewed lengths: training step and reference precompute times.

Run: ``python -m pytest tests/train/test_packing_speed.py -m slow -s`` (prints one JSON line per
model shape). Times are process CPU seconds on one thread, median over repeats: on a shared
machine they move much less than wall time, and both paths do the same work apart from packing.
"""

import json
import random
import statistics
import time

import pytest
import torch

from selm.data import TokenizedPair
from selm.engine import ReferencePolicy
from selm.modeling.tiny import build_tiny_model
from selm.objectives import build_objective
from selm.train.config import TrainingArguments
from selm.train.reference_cache import compute_reference_logps
from selm.train.trainer import PreferenceTrainer

SHAPES = {
    "tiny": dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
    "mid": dict(vocab_size=32_000, hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4),
}


def skewed_pairs(n: int, vocab: int, seed: int = 0) -> list[TokenizedPair]:
    """Most prompts and responses short, a few long: log-normal lengths (median 24 prompt / 32
    response tokens, sigma 0.9), clipped to [4, 400]."""
    rng = random.Random(seed)

    def ids(median: float) -> list[int]:
        return [rng.randrange(3, vocab) for _ in range(min(400, max(4, int(rng.lognormvariate(0, 0.9) * median))))]

    return [TokenizedPair(index=i, prompt_ids=ids(24), chosen_ids=ids(32), rejected_ids=ids(32)) for i in range(n)]


def _cpu_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def measure(shape: str, pairs_per_batch: int = 8, batches: int = 4, repeats: int = 3) -> dict:
    """CPU seconds of one DPO optimizer step's forward+backward (``batches`` micro-batches of
    ``pairs_per_batch`` pairs) and of the reference precompute, padded vs packed (the trainer's
    "rows" layout). The step is also timed with every micro-batch in one row ("one_row", the
    flash-attention layout), to show why sdpa/eager get rows: a dense mask over one long row."""
    torch.set_num_threads(1)
    pairs = skewed_pairs(pairs_per_batch * batches, SHAPES[shape]["vocab_size"])
    result: dict = {"shape": shape, "pairs": len(pairs)}
    for padding_free in (False, True):
        model = build_tiny_model(**SHAPES[shape], max_position_embeddings=1024)
        reference = build_tiny_model(**SHAPES[shape], max_position_embeddings=1024).eval().requires_grad_(False)
        args = TrainingArguments(per_device_train_batch_size=pairs_per_batch, gradient_accumulation_steps=batches,
                                 padding_free=padding_free, precompute_reference=False, max_grad_norm=None)
        trainer = PreferenceTrainer(model, build_objective("dpo"), args, pairs, pad_token_id=0,
                                    reference=ReferencePolicy(reference), progress=False)
        n_global, micro = trainer.windows(0)[0]
        key = "packed" if padding_free else "padded"
        result[f"{key}_step_cpu_s"] = _cpu_seconds(lambda: trainer.accumulate(micro, n_global), repeats)
        result[f"{key}_reference_cpu_s"] = _cpu_seconds(
            lambda: compute_reference_logps(ReferencePolicy(reference), pairs, 0, batch_size=pairs_per_batch,
                                            packing=trainer.packing, progress=False), repeats)
        if padding_free:
            assert trainer.packing == "rows"
            trainer.packing = "one_row"
            result["one_row_step_cpu_s"] = _cpu_seconds(lambda: trainer.accumulate(micro, n_global), repeats)
            rows = [len(p.prompt_ids) * 2 + len(p.chosen_ids) + len(p.rejected_ids) for p in pairs]
            result["real_tokens"] = sum(rows)
            result["padded_token_slots"] = sum(
                2 * len(chunk) * max(len(p.prompt_ids) + max(len(p.chosen_ids), len(p.rejected_ids)) for p in chunk)
                for chunk in (pairs[k:k + pairs_per_batch] for k in range(0, len(pairs), pairs_per_batch)))
    result["step_speedup"] = result["padded_step_cpu_s"] / result["packed_step_cpu_s"]
    result["reference_speedup"] = result["padded_reference_cpu_s"] / result["packed_reference_cpu_s"]
    return result


@pytest.mark.slow
@pytest.mark.parametrize("shape", list(SHAPES))
def test_packing_is_faster_on_skewed_lengths(shape):
    result = measure(shape)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))
    assert result["step_speedup"] >= (1.5 if shape == "mid" else 1.0), result
    assert result["reference_speedup"] >= (1.5 if shape == "mid" else 1.0), result
