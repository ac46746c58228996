"""apply_lora: only the adapters train, the policy starts equal to its base, and the base is what
the policy becomes with its adapters disabled (the reference of a LoRA run)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from selm.engine import collate_sequences, sequence_stats
from selm.modeling.lora import LoraConfig, apply_lora
from selm.modeling.tiny import build_tiny_model

BATCH = collate_sequences([([1, 2, 3], [4, 5, 6]), ([7], [8, 9])], pad_token_id=0)


def logps(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return sequence_stats(model, BATCH).logps


def test_only_the_adapters_train_and_the_wrapped_model_starts_as_its_base() -> None:
    base_logps = logps(build_tiny_model(vocab_size=16, seed=0).double())
    policy = apply_lora(build_tiny_model(vocab_size=16, seed=0).double(), LoraConfig(r=4, alpha=8))
    trainable = [name for name, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    # LoRA's B starts at 0: the adapter adds nothing until it is trained (float64: same sums).
    torch.testing.assert_close(logps(policy), base_logps, rtol=1e-12, atol=0)
    assert policy.peft_config["default"].r == 4 and policy.peft_config["default"].lora_alpha == 8


def test_disabling_the_adapters_gives_back_the_base() -> None:
    base_logps = logps(build_tiny_model(vocab_size=16, seed=0).double())
    policy = apply_lora(build_tiny_model(vocab_size=16, seed=0).double(), LoraConfig(r=4, target_modules=["q_proj"]))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.fill_(0.5)
    assert not torch.allclose(logps(policy), base_logps)
    with policy.disable_adapter():
        torch.testing.assert_close(logps(policy), base_logps, rtol=1e-12, atol=0)
    # ``...self_attn.q_proj.lora_A.default.weight``: only the named modules got adapters.
    assert {name.split(".")[-4] for name, p in policy.named_parameters() if p.requires_grad} == {"q_proj"}


def test_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="r"):
        LoraConfig(r=0)
    with pytest.raises(ValidationError, match="dropout"):
        LoraConfig(dropout=1.0)
