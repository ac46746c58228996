"""LoRA adapters through PEFT: the settings and the wrapping."""

from __future__ import annotations

import torch
from pydantic import Field

from selm.config import StrictModel


class LoraConfig(StrictModel):
    """PEFT LoRA settings; the reference is the same model with adapters disabled."""

    r: int = Field(16, gt=0, description="rank of each adapter")
    alpha: float = Field(32, gt=0, description="scale: an adapter's update is multiplied by alpha / r")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapters' input")
    target_modules: list[str] | str = Field("all-linear", description="module names (or PEFT's 'all-linear') "
                                                                     "that get adapters")


def apply_lora(model: torch.nn.Module, lora: LoraConfig) -> torch.nn.Module:
    """Wrap ``model`` with PEFT LoRA adapters (only the adapters train)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    config = PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                            target_modules=lora.target_modules, task_type="CAUSAL_LM")
    return get_peft_model(model, config)
