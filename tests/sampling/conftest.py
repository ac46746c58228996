"""A tiny random Llama and tokenizer for sampler tests (built in well under a second)."""

import pytest
import torch

from selm.modeling.tiny import build_tiny_model, build_tokenizer


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return build_tokenizer(vocab_size=300)


@pytest.fixture
def model(tokenizer):  # type: ignore[no-untyped-def]
    return build_tiny_model(len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            num_key_value_heads=1, seed=0).eval()


@pytest.fixture
def eos_heavy_model(model, tokenizer):  # type: ignore[no-untyped-def]
    """The tiny model with +4 added to the EOS logit: random logits are ~0, so EOS has
    probability ≈ e⁴ / (e⁴ + 299) ≈ 0.15 per step at temperature 1 and is always the argmax."""
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[tokenizer.eos_token_id] = 4.0
    model.lm_head = head
    return model
