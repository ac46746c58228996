"""The trainer's gradient diagnostics (train_log rows) and the experimental normalized_margin step."""

from __future__ import annotations

import json

import pytest
import torch

from selm.engine import ReferencePolicy, collate_sequences, naive_sequence_logps
from selm.modeling.tiny import build_tiny_model
from selm.objectives import build_objective
from selm.train.config import TrainingArguments
from selm.train.diagnostics import GRAD_KEYS
from selm.train.trainer import PreferenceTrainer


def _args(**kw) -> TrainingArguments:
    base = dict(learning_rate=1e-3, per_device_train_batch_size=4, warmup_ratio=0.0, lr_scheduler_type="constant",
                logging_steps=1, max_grad_norm=None, seed=0)
    return TrainingArguments(**{**base, **kw})


def _frozen(model: torch.nn.Module) -> ReferencePolicy:
    ref = build_tiny_model(300).to(next(model.parameters()).dtype)
    ref.load_state_dict(model.state_dict())
    return ReferencePolicy(ref.eval().requires_grad_(False))


def test_diagnostics_rows_every_k_steps(tmp_path, make_pairs):
    model = build_tiny_model(300)
    trainer = PreferenceTrainer(model, build_objective("dpo"), _args(max_steps=4, diagnostics_steps=2,
                                                                      diagnostics_pairs=3,
                                                                      reference_cache_dir=str(tmp_path / "c")),
                                make_pairs(8), pad_token_id=0, reference=_frozen(model),
                                output_dir=tmp_path / "out", progress=False)
    result = trainer.train()
    rows = [json.loads(line) for line in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    diag = [r for r in rows if "diag/grad_cosine" in r]
    assert [r["step"] for r in diag] == [2, 4]
    assert all(set(GRAD_KEYS) <= set(r) for r in diag)
    assert all(-1.0 <= r["diag/grad_cosine"] <= 1.0 for r in diag)
    # Diagnostics rows stay out of the training summary (they carry no loss).
    assert "diag/grad_cosine" not in result.metrics


def _naive_grad(model, prompt, response):
    logp = naive_sequence_logps(model, collate_sequences([(prompt, response)], 0))[0]
    grads = torch.autograd.grad(logp, list(model.parameters()))
    return float(logp.detach()), torch.cat([g.reshape(-1) for g in grads])


def test_normalized_margin_gradient_is_the_weighted_sum_of_unit_directions(tmp_path, make_pairs):
    """∇L = −(1/B) Σ β σ(−β m_i) (g_c/‖g_c‖ − g_r/‖g_r‖)_i, checked against per-sequence float64 autograd."""
    beta = 0.5
    pairs = make_pairs(3, seed=2)
    model = build_tiny_model(300).double()
    reference = build_tiny_model(300, seed=1).double().eval().requires_grad_(False)
    trainer = PreferenceTrainer(model, build_objective({"name": "normalized_margin", "beta": beta}),
                                _args(precompute_reference=False), pairs, pad_token_id=0,
                                reference=ReferencePolicy(reference), progress=False)
    batch = trainer.preference_batch(pairs, train=True)
    trainer.objective(batch).losses.mean().backward()
    got = torch.cat([p.grad.reshape(-1) for p in model.parameters()])

    expected = torch.zeros_like(got)
    for pair in pairs:
        lc, g_c = _naive_grad(model, pair.prompt_ids, pair.chosen_ids)
        lr, g_r = _naive_grad(model, pair.prompt_ids, pair.rejected_ids)
        with torch.no_grad():
            rc = float(naive_sequence_logps(reference, collate_sequences([(pair.prompt_ids, pair.chosen_ids)], 0))[0])
            rr = float(naive_sequence_logps(reference, collate_sequences([(pair.prompt_ids, pair.rejected_ids)], 0))[0])
        nc, nr = float(g_c.norm()), float(g_r.norm())
        m = (lc - rc) / nc - (lr - rr) / nr
        weight = beta * float(torch.sigmoid(torch.tensor(-beta * m, dtype=torch.float64)))
        expected -= weight * (g_c / nc - g_r / nr) / len(pairs)
    # The engine takes log-softmax in float32 (so does the naive path): compare as whole vectors.
    assert float((got - expected).norm() / expected.norm()) < 1e-6
    assert float(torch.nn.functional.cosine_similarity(got, expected, dim=0)) > 1 - 1e-9
    # The norms the objective saw are the per-sequence gradient norms.
    naive_norm = _naive_grad(model, pairs[0].prompt_ids, pairs[0].chosen_ids)[1].norm().item()
    assert batch.chosen_grad_norms[0].item() == pytest.approx(naive_norm, rel=1e-6)
