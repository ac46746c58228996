"""The DeepSpeed config selm hands to ``deepspeed.initialize``: train.* fills what a JSON config
leaves "auto", and whatever would train otherwise than train.* says is refused with one line."""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import ValidationError

from selm.errors import ConfigError
from selm.train.config import TrainingArguments
from selm.train.deepspeed import deepspeed_config, requested_deepspeed

ARGS = TrainingArguments(per_device_train_batch_size=2, gradient_accumulation_steps=3, max_grad_norm=0.5)


def test_a_stage_takes_selms_batch_accumulation_clipping_and_dtype():
    config = deepspeed_config(3, ARGS, torch.bfloat16)
    assert config["zero_optimization"] == {"stage": 3}
    assert (config["train_micro_batch_size_per_gpu"], config["gradient_accumulation_steps"],
            config["gradient_clipping"]) == (2, 3, 0.5)
    assert config["bf16"] == {"enabled": True, "check_grad_overflow": True} and config["fp16"] == {"enabled": False}
    # selm's loop decides where a step ends (a short last batch has fewer micro-batches).
    assert config["managed_gradient_accumulation"] is False
    assert deepspeed_config(2, ARGS.model_copy(update={"max_grad_norm": None}), torch.float32)["gradient_clipping"] == 0.0


def test_a_json_config_keeps_its_own_keys_and_fills_auto(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 3, "overlap_comm": True},
                                "optimizer": {"type": "AdamW", "params": {"lr": "auto"}},
                                "train_batch_size": "auto", "train_micro_batch_size_per_gpu": 2}))
    config = deepspeed_config(str(path), ARGS, torch.float32)
    assert config["zero_optimization"] == {"stage": 3, "overlap_comm": True}
    assert "optimizer" not in config and "train_batch_size" not in config
    assert config["gradient_accumulation_steps"] == 3


@pytest.mark.parametrize("content,message", [
    ({"zero_optimization": {"stage": 1}}, "ZeRO stage 1; selm drives stages 2 and 3"),
    ({"zero_optimization": {"stage": 3}, "gradient_accumulation_steps": 4},
     "gradient_accumulation_steps is 4, train.* says 3"),
    ({"zero_optimization": {"stage": 2}, "optimizer": {"type": "AdamW", "params": {"lr": 1e-5}}},
     "'optimizer' sets its own values"),
    ({"zero_optimization": {"stage": 2}, "train_batch_size": 64}, "train_batch_size follows from"),
    ({"zero_optimization": {"stage": 2}, "bf16": {"enabled": True}}, "bf16.enabled contradicts train.dtype"),
])
def test_a_json_config_that_would_train_differently_is_refused(tmp_path, content, message):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ConfigError, match=f"train.deepspeed: {path}: .*") as info:
        deepspeed_config(str(path), ARGS, torch.float32)
    assert message in str(info.value)


def test_an_unreadable_config_and_fsdp_with_deepspeed_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a readable DeepSpeed JSON config"):
        deepspeed_config(str(tmp_path / "missing.json"), ARGS, torch.float32)
    with pytest.raises(ValidationError, match="train.fsdp and train.deepspeed both shard"):
        TrainingArguments(fsdp=True, deepspeed=3)
    with pytest.raises(ValidationError, match="which train.deepspeed shards"):
        TrainingArguments(deepspeed=2, diagnostics_steps=1)


def test_an_accelerate_deepspeed_launch_is_a_request(monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    assert requested_deepspeed(None) is None
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    monkeypatch.delenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", raising=False)
    assert requested_deepspeed(None) == 3
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", "ds.json")
    assert requested_deepspeed(None) == "ds.json"
    assert requested_deepspeed(2) == 2
