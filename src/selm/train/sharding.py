"""FSDP2 under selm's trainers: shard the policy, consolidate it for saving, sharded checkpoints.

Accelerate 1.16 shards only on GPUs: on CPU its FSDP plugin (``fsdp_version`` 1 or 2) leaves the
run unsharded or refuses it. selm therefore shards with PyTorch's ``fully_shard`` (FSDP2) itself,
the same way on CPU (gloo) and GPU (NCCL), and keeps Accelerate for devices, processes and the
rest. Each decoder layer is one FSDP unit and the :class:`~selm.engine.SequenceStatsModel` the
root, so every forward (training, reference, evaluation) goes through the root and gathers the
embedding, the final norm and the (possibly tied) output layer there.

A parameter, its gradient and its AdamW moments live as one ``1/N`` shard (dim 0) per process.
Saving gathers the full weights once onto the main process's CPU; checkpoints stay sharded
(``torch.distributed.checkpoint``: each process writes its own shard and reads it back).
"""

from __future__ import annotations

from pathlib import Path

import torch

from selm.engine import SequenceStatsModel
from selm.errors import ConfigError

# The folder of a checkpoint that holds the sharded model and optimizer state.
SHARDED_STATE = "sharded"


def decoder_layer_names(module: torch.nn.Module) -> set[str]:
    """Class names of the decoder layers of every Hugging Face model inside ``module``
    (transformers' ``_no_split_modules``): the FSDP units."""
    names: set[str] = set()
    for sub in module.modules():
        names.update(getattr(sub, "_no_split_modules", None) or [])
    return names


def shard_model(model: SequenceStatsModel, device_type: str) -> None:
    """Shard ``model`` in place over all processes: each decoder layer, then the root.

    Parameters become ``DTensor`` shards; a layer's full weights exist only during its forward
    and backward. Raises ConfigError for a model with no known decoder layer class.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    names = decoder_layer_names(model)
    if not names:
        raise ConfigError(f"train.fsdp: {type(model.policy).__name__} names no decoder layer class "
                          f"(transformers' _no_split_modules), so it cannot be sharded layer by layer")
    mesh = init_device_mesh(device_type, (torch.distributed.get_world_size(),))
    for sub in list(model.modules()):
        if type(sub).__name__ in names:
            fully_shard(sub, mesh=mesh)
    fully_shard(model, mesh=mesh)


def consolidated_state_dict(model: SequenceStatsModel) -> dict[str, dict[str, torch.Tensor]]:
    """The full, unsharded weights on the main process's CPU (``{}`` on the others), split by
    submodule: ``{"policy": {...}, "value_head": {...}}`` with the submodule's own key names.

    A collective: every process must call it.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    # A tied output layer is the embedding under a second name: gathered, the two are separate
    # copies that save_pretrained would write twice. Keep the first name, as the module lists them.
    first: dict[int, str] = {}
    aliases = {name for name, p in model.named_parameters(remove_duplicate=False) if first.setdefault(id(p), name) != name}
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in full.items():
        if key in aliases:
            continue
        part, name = key.split(".", 1)
        parts.setdefault(part, {})[name] = tensor
    return parts


def save_sharded_state(model: SequenceStatsModel, optimizer: torch.optim.Optimizer, folder: Path) -> None:
    """Every process writes its shard of the weights and AdamW state into ``folder`` (a collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=str(folder))


def load_sharded_state(model: SequenceStatsModel, optimizer: torch.optim.Optimizer, folder: Path) -> None:
    """Every process reads its shard of what :func:`save_sharded_state` wrote (a collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=str(folder))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
