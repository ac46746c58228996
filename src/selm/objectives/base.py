"""The objective contract: per-example preference statistics in, per-example losses out.

An objective is a small, pure callable over tensors of shape [B]. It never sees a model, a
tokenizer or a dataset: the log-prob engine (``selm.logprobs``) computes the statistics an
objective declares in ``requires`` and nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Callable, ClassVar

import torch

from selm.errors import ConfigError

OPTIONAL_FIELDS = (
    "reference_chosen_logps",
    "reference_rejected_logps",
    "chosen_lengths",
    "rejected_lengths",
    "policy_explore_logps",
    "reference_explore_logps",
    "chosen_seq_kl",
    "rejected_seq_kl",
)


@dataclass
class PreferenceBatch:
    """Per-example statistics of a batch of B preference pairs.

    All log-probs are sums over response tokens only (prompt and padding excluded), in nats.

    Attributes:
        policy_chosen_logps: [B] log π_θ(y_w | x).
        policy_rejected_logps: [B] log π_θ(y_l | x).
        reference_chosen_logps: [B] log π_ref(y_w | x), or None for reference-free objectives.
        reference_rejected_logps: [B] log π_ref(y_l | x), or None.
        chosen_lengths: [B] number of response tokens |y_w| (float or int).
        rejected_lengths: [B] number of response tokens |y_l|.
        policy_explore_logps: [B] log π_θ(y_0 | x) of the exploration response (SELM: the greedy
            answer of the round-start policy; XPO: a sample of the reference).
        reference_explore_logps: [B] log π_ref(y_0 | x).
        chosen_seq_kl: [B] Σ_t KL(π_ref(·|x, y_w,<t) ‖ π_θ(·|x, y_w,<t)) over response tokens (TDPO).
        rejected_seq_kl: [B] the same for y_l.
    """

    policy_chosen_logps: torch.Tensor
    policy_rejected_logps: torch.Tensor
    reference_chosen_logps: torch.Tensor | None = None
    reference_rejected_logps: torch.Tensor | None = None
    chosen_lengths: torch.Tensor | None = None
    rejected_lengths: torch.Tensor | None = None
    policy_explore_logps: torch.Tensor | None = None
    reference_explore_logps: torch.Tensor | None = None
    chosen_seq_kl: torch.Tensor | None = None
    rejected_seq_kl: torch.Tensor | None = None

    def require(self, names: frozenset[str] | set[str], objective: str) -> None:
        """Raise a ConfigError naming the first field in ``names`` that is None."""
        for name in sorted(names):
            if getattr(self, name) is None:
                raise ConfigError(
                    f"objective '{objective}' needs the field '{name}' of PreferenceBatch, "
                    f"but it is None"
                )

    @property
    def batch_size(self) -> int:
        return int(self.policy_chosen_logps.shape[0])


@dataclass
class ObjectiveOutput:
    """What an objective returns.

    Attributes:
        losses: [B] per-example losses; the batch loss is ``losses.mean()``.
        metrics: name -> scalar tensor (already averaged over the batch), detached. Names follow
            TRL's (``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``,
            ``rewards/accuracies``, ``logps/chosen``, ``logps/rejected``) plus the objective's own.
    """

    losses: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


class Objective:
    """Base class of every preference objective.

    Subclasses set ``name``, ``requires`` (the optional PreferenceBatch fields they read), declare
    their hyperparameters as keyword arguments of ``__init__`` with the papers' defaults, and
    implement ``compute``. ``__call__`` checks the required fields first.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset()

    def __call__(self, batch: PreferenceBatch) -> ObjectiveOutput:
        batch.require(self.requires, self.name)
        return self.compute(batch)

    def compute(self, batch: PreferenceBatch) -> ObjectiveOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def needs_reference(self) -> bool:
        return bool(self.requires & {"reference_chosen_logps", "reference_rejected_logps",
                                     "reference_explore_logps", "chosen_seq_kl", "rejected_seq_kl"})

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


_REGISTRY: dict[str, type[Objective]] = {}


def register_objective(*names: str) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator: register an Objective subclass under one or more names."""

    def wrap(cls: type[Objective]) -> type[Objective]:
        for name in names:
            if name in _REGISTRY and _REGISTRY[name] is not cls:
                raise ValueError(f"objective name '{name}' is registered twice")
            _REGISTRY[name] = cls
        return cls

    return wrap


def available_objectives() -> list[str]:
    """Sorted list of registered objective names (aliases included)."""
    return sorted(_REGISTRY)


def get_objective(name: str, **hyperparameters: float) -> Objective:
    """Build a registered objective by name.

    Raises ConfigError for an unknown name or an unknown / invalid hyperparameter.
    """
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown objective '{name}'; available: {', '.join(available_objectives())}"
        )
    cls = _REGISTRY[name]
    try:
        return cls(**hyperparameters)
    except TypeError as exc:
        raise ConfigError(f"objective '{name}': {exc}") from None


def batch_fields() -> tuple[str, ...]:
    """Names of every PreferenceBatch field."""
    return tuple(f.name for f in fields(PreferenceBatch))


def validate_positive(objective: str, **values: float) -> None:
    """Raise ConfigError unless every given hyperparameter is > 0."""
    for key, value in values.items():
        if not value > 0:
            raise ConfigError(f"objective '{objective}': {key} must be > 0, got {value}")
