"""Gradient-entanglement diagnostics against explicit per-sequence autograd in float64."""

from __future__ import annotations

import pytest
import torch

from selm.data import TokenizedPair
from selm.engine import collate_sequences, naive_sequence_logps
from selm.modeling.tiny import build_tiny_model
from selm.train.diagnostics import (
    PairGradientStats,
    logp_shift_metrics,
    pair_gradient_stats,
)


def _naive_grad(model: torch.nn.Module, prompt: list[int], response: list[int]) -> torch.Tensor:
    """∇θ log π(response | prompt) of one unpadded sequence, as one flat float64 vector."""
    batch = collate_sequences([(prompt, response)], pad_token_id=0)
    logp = naive_sequence_logps(model, batch)[0]
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(logp, params, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])


def test_stats_match_per_sequence_autograd_float64(make_pairs):
    model = build_tiny_model(300).double()
    pairs = make_pairs(5, seed=3)
    stats = pair_gradient_stats(model, pairs, pad_token_id=0, batch_size=3)  # padded batches of 3 and 2
    for k, pair in enumerate(pairs):
        g_c = _naive_grad(model, pair.prompt_ids, pair.chosen_ids)
        g_r = _naive_grad(model, pair.prompt_ids, pair.rejected_ids)
        inner, nc, nr = float(g_c @ g_r), float(g_c @ g_c), float(g_r @ g_r)
        assert float(stats.inner[k]) == pytest.approx(inner, rel=1e-9)
        assert float(stats.chosen_sq_norm[k]) == pytest.approx(nc, rel=1e-9)
        assert float(stats.rejected_sq_norm[k]) == pytest.approx(nr, rel=1e-9)
        assert float(stats.cosine[k]) == pytest.approx(inner / (nc * nr) ** 0.5, rel=1e-9)
        assert float(stats.ratio[k]) == pytest.approx(inner / min(nc, nr), rel=1e-9)
    # The model's .grad buffers are untouched and its mode restored.
    assert all(p.grad is None for p in model.parameters())
    assert model.training


def test_ratio_divides_by_the_smaller_of_both_norms():
    # ‖g_r‖² < ‖g_c‖² in pair 0 and the reverse in pair 1: the authors' script would use ‖g_c‖² twice.
    stats = PairGradientStats(inner=torch.tensor([2.0, 2.0], dtype=torch.float64),
                              chosen_sq_norm=torch.tensor([4.0, 1.0], dtype=torch.float64),
                              rejected_sq_norm=torch.tensor([1.0, 4.0], dtype=torch.float64))
    assert stats.ratio.tolist() == [2.0, 2.0]
    assert stats.cosine.tolist() == [1.0, 1.0]
    m = stats.metrics()
    assert m["diag/grad_ratio"] == 2.0 and m["diag/grad_entangled_frac"] == 1.0
    assert m["diag/grad_norm_chosen"] == pytest.approx(1.5) and m["diag/grad_inner"] == 2.0


def test_lora_gradients_cover_only_the_adapters(make_pairs):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(build_tiny_model(300).double(), LoraConfig(r=4, target_modules="all-linear",
                                                                      init_lora_weights=False))
    pairs = make_pairs(2, seed=1)
    stats = pair_gradient_stats(model, pairs, pad_token_id=0)
    g = _naive_grad(model, pairs[0].prompt_ids, pairs[0].chosen_ids)
    n_lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert g.numel() == n_lora
    assert float(stats.chosen_sq_norm[0]) == pytest.approx(float(g @ g), rel=1e-9)


def test_logp_shift_fractions():
    before = {"chosen": torch.tensor([-5.0, -6.0, -7.0, -8.0]), "rejected": torch.tensor([-5.0, -6.0, -7.0, -8.0])}
    after = {"chosen": torch.tensor([-4.0, -6.5, -7.5, -7.0]), "rejected": torch.tensor([-6.0, -5.0, -7.5, -9.0])}
    m = logp_shift_metrics(before, after)
    assert m["diag/chosen_logp_fell_frac"] == 0.5
    assert m["diag/rejected_logp_rose_frac"] == 0.25
    assert m["diag/both_logp_fell_frac"] == 0.25
    assert m["diag/chosen_logp_delta"] == pytest.approx((1.0 - 0.5 - 0.5 + 1.0) / 4)
    assert m["diag/rejected_logp_delta"] == pytest.approx((-1.0 + 1.0 - 0.5 - 1.0) / 4)


def test_pair_with_same_responses_is_fully_entangled():
    model = build_tiny_model(300).double()
    pair = TokenizedPair(index=0, prompt_ids=[1, 40, 41], chosen_ids=[12, 13, 2], rejected_ids=[12, 13, 2])
    stats = pair_gradient_stats(model, [pair], pad_token_id=0)
    assert float(stats.cosine[0]) == pytest.approx(1.0, abs=1e-12)
    assert float(stats.ratio[0]) == pytest.approx(1.0, abs=1e-12)
