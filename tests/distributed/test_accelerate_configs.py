"""The shipped Accelerate configs load and pass accelerate's own checks (as far as this CPU allows)."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

CONFIGS = Path(__file__).parents[2] / "configs" / "accelerate"


@pytest.mark.parametrize("name,kind", [("ddp", DistributedType.MULTI_GPU), ("fsdp", DistributedType.FSDP),
                                       ("cpu_2proc", DistributedType.MULTI_GPU)])
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
