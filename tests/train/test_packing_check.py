"""resolve_packing: packs only models that keep packed sequences apart, falls back with a warning."""

import pytest
import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from selm.modeling.tiny import build_tiny_model
from selm.train.packing_check import packing_error, packing_layout, resolve_packing


def _causal_only(module, query, key, value, attention_mask, **kwargs):
    """An attention backend that takes no mask (plain causal over the whole row), like custom
    kernels or older modeling code: packed sequences would see the ones before them."""
    return sdpa_attention_forward(module, query, key, value, None, **kwargs)


AttentionInterface.register("selm_test_causal_only", _causal_only)


def test_llama_sdpa_and_eager_isolate_packed_sequences():
    model = build_tiny_model(300)
    for implementation in ("sdpa", "eager"):
        model.set_attn_implementation(implementation)
        assert packing_error(model, "rows") < 1e-5
        assert packing_error(model, "one_row") < 1e-5
        assert resolve_packing(True, model) == "rows"
    assert resolve_packing(False, model) is None


def test_a_backend_that_ignores_the_mask_falls_back_to_padding_with_a_warning():
    model = build_tiny_model(300)
    model.set_attn_implementation("selm_test_causal_only")
    assert packing_error(model, "rows") > 0.1
    with pytest.warns(UserWarning, match=r"padding_free: LlamaForCausalLM \(attention 'selm_test_causal_only'\) "
                                         r"does not keep packed sequences apart .* training on padded batches"):
        assert resolve_packing(True, model) is None


def test_every_model_must_pass():
    good, bad = build_tiny_model(300), build_tiny_model(300, seed=1)
    bad.set_attn_implementation("selm_test_causal_only")
    with pytest.warns(UserWarning, match="padding_free"):
        assert resolve_packing(True, good, bad) is None


def test_flash_attention_gets_one_row_and_the_probe_restores_training_mode():
    model = build_tiny_model(300).train()
    assert packing_layout(model) == "rows"
    # Only the name is read; flash kernels need one row to find the boundaries in position_ids.
    model.config._attn_implementation_internal = "flash_attention_2"
    assert model.config._attn_implementation == "flash_attention_2"
    assert packing_layout(model) == "one_row"
    model.config._attn_implementation_internal = "sdpa"
    packing_error(model, "rows")
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert torch.is_grad_enabled()
