"""build_reference: none for a reference-free objective, the LoRA policy with its adapters disabled,
or a frozen model loaded from the reference source (else the starting model)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from selm.errors import ConfigError
from selm.modeling.lora import LoraConfig, apply_lora
from selm.modeling.tiny import build_tiny_model
from selm.objectives import get_objective
from selm.train.config import TrainingArguments
from selm.train.reference import build_reference


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(starting model, another model) saved as safetensors folders."""
    start, other = tmp_path_factory.mktemp("start"), tmp_path_factory.mktemp("other")
    build_tiny_model(vocab_size=40, seed=0).save_pretrained(start, safe_serialization=True)
    build_tiny_model(vocab_size=40, seed=7).save_pretrained(other, safe_serialization=True)
    return str(start), str(other)


def weights(source: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(Path(source) / "model.safetensors")


def test_reference_free_objectives_get_none_and_refuse_a_reference_source(folders: tuple[str, str]) -> None:
    start, other = folders
    simpo, args = get_objective("simpo"), TrainingArguments(dtype="float32")
    assert build_reference(build_tiny_model(vocab_size=40), simpo, args, None, start) is None
    with pytest.raises(ConfigError, match="reference_model_name_or_path: objective 'simpo' is reference-free"):
        build_reference(build_tiny_model(vocab_size=40), simpo, args, other, start)


@pytest.mark.parametrize("explicit", [False, True])
def test_a_frozen_copy_of_the_starting_model_or_the_named_one(folders: tuple[str, str], explicit: bool) -> None:
    start, other = folders
    policy = build_tiny_model(vocab_size=40, seed=0)
    ref = build_reference(policy, get_objective("dpo"), TrainingArguments(dtype="float32"),
                          other if explicit else None, start)
    assert ref is not None and ref.model is not policy and not ref.disable_adapters
    assert not ref.model.training and not any(p.requires_grad for p in ref.model.parameters())
    on_disk = weights(other if explicit else start)
    state = ref.model.state_dict()
    assert all(torch.equal(state[name], tensor) for name, tensor in on_disk.items())


def test_a_lora_policy_is_its_own_reference(folders: tuple[str, str]) -> None:
    start, other = folders
    policy = apply_lora(build_tiny_model(vocab_size=40), LoraConfig(r=2))
    args = TrainingArguments(dtype="float32")
    ref = build_reference(policy, get_objective("dpo"), args, None, start)
    assert ref is not None and ref.model is policy and ref.disable_adapters
    # An explicitly named reference is loaded even with LoRA.
    ref = build_reference(policy, get_objective("dpo"), args, other, start)
    assert ref is not None and ref.model is not policy and not ref.disable_adapters
