"""Per-round diagnostics in metrics.jsonl: log-prob shifts of the round's pairs, gradient
entanglement averaged over the round, and the best-of-N baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from selm.data import TokenizedPair
from selm.engine import ReferencePolicy
from selm.loop import start_run
from selm.modeling.loading import load_causal_lm, load_tokenizer
from selm.tasks.sources import resolve_model_source
from selm.train.diagnostics import GRAD_KEYS
from selm.train.reference_cache import compute_reference_logps

SMALL = ["rounds=1", "prompts.per_round=16", "prompts.num_eval=8", "sampling.n=4", "eval.samples_per_prompt=1",
         "train.per_device_train_batch_size=4", "train.diagnostics_steps=2", "train.diagnostics_pairs=4",
         "eval.best_of_n=4"]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ~20 s each on a 2-core CPU (one short online round); the initial-reference path only with -m slow.
@pytest.mark.parametrize("reference", ["round_start", pytest.param("initial", marks=pytest.mark.slow)])
def test_round_metrics_carry_diagnostics_and_best_of_n(tmp_path, reference):
    run_dir = start_run(None, SMALL + [f"reference={reference}"], output=tmp_path / "run", progress=False)
    metrics = _rows(run_dir / "metrics.jsonl")
    row = metrics[1]

    # Fractions recomputed independently: log-probs of the round's pairs under pi_0 and pi_1.
    rd = run_dir / "rounds" / "01"
    pairs = [TokenizedPair(i, r["prompt_ids"], r["chosen_ids"], r["rejected_ids"])
             for i, r in enumerate(_rows(rd / "pairs.jsonl"))]
    pad = load_tokenizer(str(rd / "policy")).pad_token_id
    before = compute_reference_logps(ReferencePolicy(load_causal_lm(resolve_model_source("builtin:sort"))), pairs,
                                     pad, progress=False)
    after = compute_reference_logps(ReferencePolicy(load_causal_lm(str(rd / "policy"))), pairs, pad, progress=False)
    fell = float((after["chosen"] < before["chosen"] - 1e-4).double().mean())
    rose = float((after["rejected"] > before["rejected"] + 1e-4).double().mean())
    assert row["diag/chosen_logp_fell_frac"] == pytest.approx(fell, abs=1.5 / len(pairs))
    assert row["diag/rejected_logp_rose_frac"] == pytest.approx(rose, abs=1.5 / len(pairs))
    assert row["diag/chosen_logp_delta"] == pytest.approx(float((after["chosen"] - before["chosen"]).mean()), abs=1e-3)

    # Gradient diagnostics: the round's mean of the train_log rows.
    log = [r for r in _rows(rd / "train_log.jsonl") if "diag/grad_ratio" in r]
    assert log and set(GRAD_KEYS) <= set(row)
    assert row["diag/grad_ratio"] == pytest.approx(sum(r["diag/grad_ratio"] for r in log) / len(log))

    # Best-of-4 with the gold judge: one pick per held-out prompt, judge reward = gold reward.
    for k in (0, 1):
        best = _rows(run_dir / "rounds" / f"{k:02d}" / "best_of_n.jsonl")
        assert len(best) == 8 and all(b["n"] == 4 and b["reward"] == b["gold_reward"] for b in best)
        assert metrics[k]["eval/best_of_n_gold_reward"] == pytest.approx(sum(b["gold_reward"] for b in best) / 8)
        assert metrics[k]["eval/best_of_n"] == 4
    assert torch.isfinite(torch.tensor(row["diag/grad_cosine"]))
