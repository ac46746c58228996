"""Objectives: pure losses over per-example statistics, registered by name: preference pairs
(``PreferenceBatch``, [B]) and rollouts (``RolloutBatch``, [B, T]; with the advantage estimators of
``selm.objectives.advantages``).

>>> from selm.objectives import build_objective
>>> build_objective([{"name": "dpo", "beta": 0.1}, {"name": "sft", "weight": 0.2}]).name
'dpo+sft'
"""

from __future__ import annotations

from typing import Any

from selm.errors import ConfigError

# Importing a module registers its objectives.
from selm.objectives import (  # noqa: F401
    aihf,
    alol,
    cpl,
    dpo,
    dpo_variants,
    fpo,
    gflownet,
    grpo,
    hinge,
    hypo,
    ipo,
    lcpo,
    normalized_margin,  # noqa: F401  (experimental)
    osp,
    pama,
    ppo,
    rloo,
    robust,
    sail,
    selm,
    sft,
    simpo,
    spac,
    tdpo,
    vpo,
    xpo,
)
from selm.objectives.base import (
    Objective,
    ObjectiveOutput,
    PreferenceBatch,
    available_objectives,
    get_objective,
    register_objective,
)
from selm.objectives.combined import WeightedObjective
from selm.objectives.rollout import RolloutBatch

__all__ = [
    "Objective",
    "ObjectiveOutput",
    "PreferenceBatch",
    "RolloutBatch",
    "WeightedObjective",
    "available_objectives",
    "build_objective",
    "get_objective",
    "register_objective",
]

ObjectiveSpec = str | dict[str, Any] | list[dict[str, Any]]


def _from_mapping(spec: dict[str, Any], where: str) -> Objective:
    """The objective named by ``spec["name"]`` with the other keys, ``weight`` aside, as hyperparameters."""
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a mapping with a 'name' key, got {type(spec).__name__}")
    if not isinstance(spec.get("name"), str):
        raise ConfigError(f"{where} needs a 'name' key naming the objective, got {spec!r}")
    hyperparameters = {k: v for k, v in spec.items() if k not in ("name", "weight")}
    return get_objective(spec["name"], **hyperparameters)


def build_objective(spec: ObjectiveSpec) -> Objective:
    """Build an objective from a config value.

    Args:
        spec: one of
            - a name: ``"dpo"``;
            - a mapping of name and hyperparameters: ``{"name": "selm", "beta": 0.01, "alpha": 1e-3}``;
            - a list of such mappings, each with an optional ``weight`` (default 1.0):
              ``[{"name": "dpo"}, {"name": "sft", "weight": 0.2}]`` -> a ``WeightedObjective``.

    Raises:
        ConfigError: unknown name, unknown or invalid hyperparameter, bad weight, or bad shape of
            ``spec``; the message names the offending key.
    """
    if isinstance(spec, str):
        return get_objective(spec)
    if isinstance(spec, dict):
        if "weight" in spec:
            raise ConfigError(f"objective '{spec.get('name')}': 'weight' is only meaningful in a list of objectives")
        return _from_mapping(spec, "objective")
    if isinstance(spec, list) and spec:
        # _from_mapping has checked that each item is a mapping before its weight is read.
        return WeightedObjective([(_from_mapping(item, f"objective[{i}]"), item.get("weight", 1.0))
                                  for i, item in enumerate(spec)])
    raise ConfigError(f"objective must be a name, a mapping or a non-empty list of mappings, got {spec!r}")
