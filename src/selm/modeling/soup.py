"""Model soups: the weight-space average of fine-tuned models, SALSA's KL reference.

SALSA (Chegini et al. 2024, https://arxiv.org/abs/2411.01798) replaces the frozen SFT reference of
RLHF by the weight-space average of two SFT models fine-tuned independently from the same
pretrained weights:

    θ_soup = α·θ_1 + (1 − α)·θ_2,    α = 0.5 (the midpoint) by default

Here for any number M ≥ 2 of models, ``θ_soup = Σ_m w_m·θ_m`` with w on the simplex. Averaging only
means something for models that share their initialisation (linear mode connectivity); the shapes
and parameter names are checked, the shared origin cannot be.

Config (``reference`` section of a run)::

    reference: {soup: [sft-seed-1, sft-seed-2], weights: [0.5, 0.5]}
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from pydantic import Field, ValidationInfo, field_validator

from selm.config import StrictModel
from selm.errors import ConfigError

# Decimal weights from YAML (0.333333 × 3) miss 1 by rounding; anything further off is a mistake.
WEIGHT_SUM_TOLERANCE = 1e-6


def weights_problem(weights: Sequence[float], count: int) -> str | None:
    """Why ``weights`` cannot weigh a soup of ``count`` models, or None when they can.

    They must be ``count`` finite numbers > 0 summing to 1 within ``WEIGHT_SUM_TOLERANCE``: the
    paper's soup is a convex combination, and weights summing to 0.8 are more likely a typo than
    a wish to shrink the model.
    """
    if len(weights) != count:
        return f"{len(weights)} weights for {count} models"
    for index, weight in enumerate(weights):
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                or weight <= 0:
            return f"weight {index} must be a finite number > 0, got {weight!r}"
    total = math.fsum(weights)
    if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
        return f"must sum to 1 (a convex combination), got sum {total!r}"
    return None


class SoupSpec(StrictModel):
    """A reference made of a soup of models: ``{soup: [a, b], weights: [0.5, 0.5]}``."""

    soup: list[str] = Field(min_length=2, description="the models to average: hub ids or folders, "
                                                      "all fine-tuned from the same pretrained weights")
    weights: list[float] | None = Field(None, description="one weight per model, each > 0, summing to 1; "
                                                          "default: uniform (SALSA's midpoint for two models)")

    @field_validator("weights")
    @classmethod
    def _check_weights(cls, weights: list[float] | None, info: ValidationInfo) -> list[float] | None:
        soup = info.data.get("soup")
        if weights is not None and soup is not None:
            problem = weights_problem(weights, len(soup))
            if problem:
                raise ValueError(problem)
        return weights

    @property
    def resolved_weights(self) -> list[float]:
        """The weights, uniform when none were given."""
        return list(self.weights) if self.weights is not None else [1.0 / len(self.soup)] * len(self.soup)


def _plain(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` itself, or for a PEFT-wrapped one a copy with its adapters merged into the base
    weights (the caller's model keeps its adapters)."""
    if hasattr(model, "peft_config"):
        return copy.deepcopy(model).merge_and_unload()
    return model


def _describe(entry: torch.Tensor | None) -> str:
    return "absent" if entry is None else f"shape {tuple(entry.shape)}"


def _check_same_layout(states: Sequence[dict[str, torch.Tensor]]) -> None:
    """Raise ConfigError naming the first key where a model's state differs from the first's."""
    first = states[0]
    for index, state in enumerate(states[1:], start=1):
        keys = list(first) + [key for key in state if key not in first]
        for key in keys:
            a, b = _describe(first.get(key)), _describe(state.get(key))
            if a != b:
                raise ConfigError(f"reference soup: models differ at '{key}': {a} in model 0, {b} in model {index}; "
                                  f"a soup averages models of one architecture")


def _normalised_weights(models: Sequence[torch.nn.Module], weights: Sequence[float]) -> list[float]:
    if len(models) < 2:
        raise ConfigError(f"reference soup: needs at least 2 models, got {len(models)}")
    problem = weights_problem(weights, len(models))
    if problem:
        raise ConfigError(f"reference soup: weights: {problem}")
    total = math.fsum(weights)
    return [w / total for w in weights]


def soup_state_dict(models: Sequence[torch.nn.Module], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """The weighted average of ``models``' weights, key by key.

    θ_soup[k] = Σ_m ŵ_m·θ_m[k] with ŵ = w / Σ w (the sum is 1 within ``WEIGHT_SUM_TOLERANCE``; dividing
    removes the decimal rounding). PEFT-wrapped models are merged first (W + (α/r)·B·A, on a copy),
    so a LoRA fine-tune is averaged as the full model it stands for.

    Floating-point entries are accumulated in float32 (float64 when the first model's entry is
    float64), whatever the models' dtype, then cast to the first model's dtype: a bfloat16 sum
    would lose the small differences that make the soup differ from either model. Other entries
    (integer buffers) must be equal in every model and are taken from the first.

    Args:
        models: M ≥ 2 models of the same architecture (same parameter names and shapes once
            merged), ideally fine-tuned from the same pretrained weights.
        weights: M weights, each > 0, summing to 1.

    Returns:
        The first model's state-dict keys (after merging) -> tensor of that entry's shape and dtype.

    Raises:
        ConfigError: fewer than 2 models, bad weights, or models whose parameter names or shapes
            differ (naming the first differing key and both shapes).
    """
    normalised = _normalised_weights(models, weights)
    states = [_plain(model).state_dict() for model in models]
    _check_same_layout(states)
    out: dict[str, torch.Tensor] = {}
    for key, reference in states[0].items():
        if not reference.is_floating_point():
            for index, state in enumerate(states[1:], start=1):
                if not torch.equal(state[key], reference):
                    raise ConfigError(f"reference soup: model {index} differs from model 0 at '{key}', "
                                      f"a {reference.dtype} entry that cannot be averaged")
            out[key] = reference.clone()
            continue
        accumulate = torch.float64 if reference.dtype == torch.float64 else torch.float32
        average = torch.zeros(reference.shape, dtype=accumulate, device=reference.device)
        for weight, state in zip(normalised, states):
            average.add_(state[key].to(device=reference.device, dtype=accumulate), alpha=weight)
        out[key] = average.to(reference.dtype)
    return out


def soup_model(models: Sequence[torch.nn.Module], weights: Sequence[float]) -> torch.nn.Module:
    """A new model holding the soup of ``models`` (see ``soup_state_dict``).

    It is a copy of the first model (with its adapters merged when it is PEFT-wrapped, so the soup
    is a plain model), in the first model's dtype and device; the given models are not changed.
    """
    _normalised_weights(models, weights)  # refuse bad input before copying a model
    first = models[0]
    soup = _plain(first)
    if soup is first:
        soup = copy.deepcopy(first)
    # The merged copy stands for the first model, so a PEFT model is merged once.
    soup.load_state_dict(soup_state_dict([soup, *models[1:]], weights))
    return soup


def load_soup_member(folder: str, dtype: str, trust_remote_code: bool = False, allow_pickle: bool = False
                     ) -> torch.nn.Module:
    """One model of a soup: a full model folder or hub id, or a PEFT adapter folder (its base model
    loaded and the adapter attached, to be merged by :func:`soup_model`)."""
    import json
    from pathlib import Path

    from selm.modeling.loading import load_causal_lm

    config = Path(folder) / "adapter_config.json"
    if not config.is_file():
        return load_causal_lm(folder, dtype=dtype, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    from peft import PeftModel

    base = json.loads(config.read_text())["base_model_name_or_path"]
    model = load_causal_lm(base, dtype=dtype, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    return PeftModel.from_pretrained(model, folder)
