"""Model soups (SALSA's reference): the weighted average of models' weights, LoRA merged first,
checked against float64 averages computed here, with tolerances from the rounding of each step."""

from __future__ import annotations

import pytest
import torch

from selm.config import validate
from selm.errors import ConfigError
from selm.modeling.lora import LoraConfig, apply_lora
from selm.modeling.soup import SoupSpec, soup_model, soup_state_dict
from selm.modeling.tiny import build_tiny_model

U32 = 2.0**-24  # unit roundoff of float32
U64 = 2.0**-53
U_BF16 = 2.0**-8


def tiny(seed: int = 0, hidden_size: int = 32, num_hidden_layers: int = 2) -> torch.nn.Module:
    return build_tiny_model(vocab_size=16, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers, seed=seed)


def states64(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().double() for k, v in model.state_dict().items()}


def test_soup_of_a_model_with_itself_is_the_model() -> None:
    model = tiny()
    original = states64(model)
    # Halving is exact in binary floating point and w/2 + w/2 = w exactly: the soup is bit-identical.
    soup = soup_model([model, model], [0.5, 0.5])
    assert soup is not model and soup.dtype == torch.float32
    for key, value in model.state_dict().items():
        assert torch.equal(soup.state_dict()[key], value), key
    # 0.25·w is exact; 0.75·w and the sum are rounded once each: |error| ≤ 0.75u|w| + u(1 + 0.75u)|w| < 2u|w|.
    for key, value in soup_state_dict([model, model], [0.25, 0.75]).items():
        assert torch.all((value.double() - original[key]).abs() <= 2 * U32 * original[key].abs()), key
    for key, value in model.state_dict().items():
        assert torch.equal(value.double(), original[key])  # the inputs are not changed


def test_soup_of_two_models_is_their_weighted_average_in_float64() -> None:
    a, b = tiny(seed=0), tiny(seed=1)
    sa, sb = states64(a), states64(b)
    soup = soup_model([a, b], [0.3, 0.7]).state_dict()
    for key in sa:
        expected = 0.3 * sa[key] + 0.7 * sb[key]
        # float32: each weight is rounded, each product and the sum (0 + first term is exact):
        # three roundings per term, |error| ≤ ((1+u)³ − 1)(|0.3a| + |0.7b|) < 3.01u(...), plus the
        # float64 reference's own rounding.
        bound = (3.01 * U32 + 4 * U64) * (0.3 * sa[key].abs() + 0.7 * sb[key].abs())
        assert soup[key].dtype == torch.float32
        assert torch.all((soup[key].double() - expected).abs() <= bound), key
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(soup[key], a.state_dict()[key]) and not torch.equal(soup[key], b.state_dict()[key])


def test_uniform_default_and_low_precision_models_are_averaged_in_float32() -> None:
    a, b = tiny(seed=0).bfloat16(), tiny(seed=1).bfloat16()
    sa, sb = states64(a), states64(b)
    weights = SoupSpec(soup=["a", "b"]).resolved_weights
    assert weights == [0.5, 0.5]
    soup = soup_model([a, b], weights)
    assert next(soup.parameters()).dtype == torch.bfloat16
    for key, value in soup.state_dict().items():
        expected = 0.5 * sa[key] + 0.5 * sb[key]
        # Halving is exact; the float32 sum is rounded once, then the result once more to bfloat16.
        bound = (U_BF16 + U32 * (1 + U_BF16)) * expected.abs()
        assert torch.all((value.double() - expected).abs() <= bound), key


def test_lora_models_are_merged_before_averaging() -> None:
    base = tiny(seed=0).double()
    base_state = states64(base)
    lora = LoraConfig(r=4, alpha=8, target_modules=["q_proj"])
    policy = apply_lora(tiny(seed=0).double(), lora)
    with torch.no_grad():
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.linspace(-0.5, 0.5, parameter.numel(), dtype=torch.float64).view_as(parameter))
    adapters = {k: v.clone() for k, v in policy.state_dict().items() if "lora_" in k}
    scale = lora.alpha / lora.r

    merged = soup_model([policy, policy], [0.5, 0.5])
    assert not hasattr(merged, "peft_config")
    mixed = soup_state_dict([policy, base], [0.5, 0.5])
    assert set(merged.state_dict()) == set(base_state) == set(mixed)
    prefix = "base_model.model."
    for key, value in merged.state_dict().items():
        if "q_proj" not in key:
            assert torch.equal(value, base_state[key]), key
            continue
        module = key.removesuffix(".weight")
        a = adapters[f"{prefix}{module}.lora_A.default.weight"]  # [r, in]
        b = adapters[f"{prefix}{module}.lora_B.default.weight"]  # [out, r]
        update = scale * b @ a
        expected = base_state[key] + update
        # PEFT forms B·A (r products summed: γ_r ≤ (r+1)u), scales it and adds W (one rounding each).
        bound = (lora.r + 3) * U64 * (base_state[key].abs() + scale * b.abs() @ a.abs())
        assert torch.any(update != 0)
        assert torch.all((value - expected).abs() <= bound), key
        assert torch.all((mixed[key] - (base_state[key] + 0.5 * update)).abs() <= 2 * bound), key
    # The caller's model keeps its adapters.
    assert hasattr(policy, "peft_config")
    for key, value in adapters.items():
        assert torch.equal(policy.state_dict()[key], value)


def test_models_of_different_shapes_or_names_are_refused() -> None:
    with pytest.raises(ConfigError) as err:
        soup_model([tiny(), tiny(hidden_size=64)], [0.5, 0.5])
    assert str(err.value) == ("reference soup: models differ at 'model.embed_tokens.weight': shape (16, 32) in "
                              "model 0, shape (16, 64) in model 1; a soup averages models of one architecture")
    with pytest.raises(ConfigError) as err:
        soup_state_dict([tiny(), tiny(), tiny(num_hidden_layers=3)], [0.25, 0.25, 0.5])
    assert str(err.value).startswith("reference soup: models differ at 'model.layers.2.self_attn.q_proj.weight': "
                                     "absent in model 0, shape (32, 32) in model 2;")


def test_bad_weights_are_refused_with_one_line() -> None:
    model = tiny()
    with pytest.raises(ConfigError, match=r"^reference soup: weights: must sum to 1 \(a convex combination\), "
                                          r"got sum 0\.9$"):
        soup_model([model, model], [0.5, 0.4])
    with pytest.raises(ConfigError, match=r"^reference soup: weights: weight 1 must be a finite number > 0, got -0\.5$"):
        soup_state_dict([model, model], [1.5, -0.5])
    with pytest.raises(ConfigError, match=r"^reference soup: needs at least 2 models, got 1$"):
        soup_state_dict([model], [1.0])


def test_soup_spec_validates_the_config_section() -> None:
    spec = validate(SoupSpec, {"soup": ["sft-a", "sft-b", "sft-c"], "weights": [0.333333, 0.333333, 0.333334]})
    assert spec.resolved_weights == [0.333333, 0.333333, 0.333334]
    cases = {
        "reference: weights: 3 weights for 2 models (got [0.2, 0.3, 0.5])": {"soup": ["a", "b"],
                                                                             "weights": [0.2, 0.3, 0.5]},
        "reference: weights: weight 0 must be a finite number > 0, got nan (got [nan, 1.0])": {
            "soup": ["a", "b"], "weights": [float("nan"), 1.0]},
        "reference: weights: must sum to 1 (a convex combination), got sum 2.0 (got [1.0, 1.0])": {
            "soup": ["a", "b"], "weights": [1.0, 1.0]},
        "reference: weightz: unknown key": {"soup": ["a", "b"], "weightz": [0.5, 0.5]},
    }
    for message, data in cases.items():
        with pytest.raises(ConfigError) as err:
            validate(SoupSpec, data, source="reference")
        assert str(err.value) == message
    with pytest.raises(ConfigError, match=r"^reference: soup: List should have at least 2 items"):
        validate(SoupSpec, {"soup": ["a"]}, source="reference")
