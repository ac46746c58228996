"""The shipped Accelerate configs load and pass accelerate's own checks (as far as this CPU allows)."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

CONFIGS = Path(__file__).parents[2] / "configs" / "accelerate"


@pytest.mark.parametrize("name,kind", [("ddp", DistributedType.MULTI_GPU), ("fsdp", DistributedType.FSDP),
                                       ("cpu_2proc", DistributedType.MULTI_GPU),
                                       ("deepspeed_zero2", DistributedType.DEEPSPEED),
                                       ("deepspeed_zero3", DistributedType.DEEPSPEED)])
def test_config_loads_with_accelerates_own_loader(name, kind):
    # load_config_from_file rejects unknown top-level keys and checks the enum values.
    config = load_config_from_file(str(CONFIGS / f"{name}.yaml"))
    assert config.distributed_type == kind and config.num_machines == 1


def launch_options() -> set[str]:
    """The options of `accelerate launch`: the launcher turns every config key into one of them."""
    from accelerate.commands.launch import launch_command_parser

    return {opt.lstrip("-") for action in launch_command_parser()._actions for opt in action.option_strings}


def test_fsdp_config_keys_are_launcher_options():
    fsdp = load_config_from_file(str(CONFIGS / "fsdp.yaml")).fsdp_config
    assert set(fsdp) <= launch_options(), set(fsdp) - launch_options()
    assert fsdp["fsdp_sharding_strategy"] == "FULL_SHARD"


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_configs_name_their_stage_in_launcher_options(stage, monkeypatch):
    from selm.train.deepspeed import requested_deepspeed

    deepspeed = load_config_from_file(str(CONFIGS / f"deepspeed_zero{stage}.yaml")).deepspeed_config
    assert set(deepspeed) <= launch_options(), set(deepspeed) - launch_options()
    # What `accelerate launch` exports for it, and selm reads as train.deepspeed.
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", str(deepspeed["zero_stage"]))
    monkeypatch.delenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", raising=False)
    assert requested_deepspeed(None) == stage
