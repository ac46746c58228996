"""Building π_ref for an offline training job."""

from __future__ import annotations

import torch

from selm.engine import ReferencePolicy
from selm.errors import ConfigError
from selm.modeling.loading import load_causal_lm
from selm.objectives import Objective
from selm.train.config import TrainingArguments


def build_reference(model: torch.nn.Module, objective: Objective, args: TrainingArguments,
                    explicit_source: str | None, default_source: str, trust_remote_code: bool = False,
                    allow_pickle: bool = False) -> ReferencePolicy | None:
    """π_ref for ``objective``: None if reference-free; the LoRA policy with adapters disabled
    (no second copy); else a frozen model loaded from ``explicit_source`` or the starting model."""
    if not objective.needs_reference:
        if explicit_source is not None:
            raise ConfigError(f"reference_model_name_or_path: objective '{objective.name}' is reference-free "
                              f"and uses no reference model; remove the key")
        return None
    if hasattr(model, "peft_config") and explicit_source is None:
        return ReferencePolicy(model, disable_adapters=True)
    ref = load_causal_lm(explicit_source or default_source, dtype=args.dtype, trust_remote_code=trust_remote_code,
                         allow_pickle=allow_pickle)
    ref.eval().requires_grad_(False)
    return ReferencePolicy(ref)
