"""The objective contract: per-example preference statistics in, per-example losses out.

An objective is a small, pure callable over tensors of shape [B]. It never sees a model, a
tokenizer or a dataset: the log-prob engine (``selm.engine``) computes the statistics an
objective declares in ``requires`` and nothing more.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from numbers import Real
from typing import ClassVar

import torch

from selm.errors import ConfigError
from selm.objectives.fields import PREFERENCE_FIELDS, FieldTable
from selm.objectives.rollout import RolloutBatch
from selm.registry import Registry


@dataclass
class PreferenceBatch:
    """Per-example statistics of a batch of B preference pairs.

    All log-probs are sums over response tokens only (prompt and padding excluded), in nats.
    Where each field comes from, and its shape, is ``selm.objectives.fields.PREFERENCE_FIELDS``.

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
        routes: [B] SAIL route of each pair as a float code: 0 DP (dataset responses, label
            resampled from the policy), 1 PP (policy samples, policy label), 2 PR (policy samples,
            judge label), 3 plain offline DPO.
        label_probs: [B] soft label p = P(y_w ≻ y_l) in [0, 1] (OSP's self-judged strength).
        chosen_advantages: [B] A(x, y_w) = R(x, y_w) − V_ref(x) in reward units (A-LoL).
        rejected_advantages: [B] A(x, y_l).
        policy_online_logps: [B, k] log π_θ(y_j | x) of k online samples of the pair's prompt (HyPO).
        reference_online_logps: [B, k] log π_ref(y_j | x) of the same samples.
        chosen_grad_norms: [B] ‖∇θ log π_θ(y_w | x)‖ per pair, detached (the trainer computes it
            with one backward per sequence, only for objectives that require it).
        rejected_grad_norms: [B] ‖∇θ log π_θ(y_l | x)‖.
        chosen_clipped_ratio_logps: [B] Σ_t clip(sg[π_θ(y_t)/π_ref(y_t)], 1−ε, 1+ε)·log π_θ(y_t) over
            the tokens of y_w, with ε the objective's ``token_ratio_clip`` (A-LoL seq).
        rejected_clipped_ratio_logps: [B] the same for y_l.
        extra: the values of fields an objective registered itself
            (``PREFERENCE_FIELDS.register``), read as attributes like the others.
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
    routes: torch.Tensor | None = None
    label_probs: torch.Tensor | None = None
    chosen_advantages: torch.Tensor | None = None
    rejected_advantages: torch.Tensor | None = None
    policy_online_logps: torch.Tensor | None = None
    reference_online_logps: torch.Tensor | None = None
    chosen_grad_norms: torch.Tensor | None = None
    rejected_grad_norms: torch.Tensor | None = None
    chosen_clipped_ratio_logps: torch.Tensor | None = None
    rejected_clipped_ratio_logps: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.extra) - PREFERENCE_FIELDS.extensions)
        if unknown:
            raise ValueError(f"PreferenceBatch.extra: {', '.join(unknown)} not registered "
                             f"(PREFERENCE_FIELDS.register a FieldSpec first)")
        PREFERENCE_FIELDS.check_shapes({**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"},
                                        **self.extra})

    def __getattr__(self, name: str) -> torch.Tensor | None:
        # Only reached when normal lookup fails: an objective's own (registered) field reads like any other.
        if name != "extra" and name in PREFERENCE_FIELDS.extensions:
            return self.extra.get(name)
        raise AttributeError(f"PreferenceBatch has no field '{name}'")

    @classmethod
    def from_values(cls, values: dict[str, torch.Tensor]) -> PreferenceBatch:
        """A batch from field name -> value, registered extension fields going to ``extra``."""
        extensions = PREFERENCE_FIELDS.extensions
        return cls(**{k: v for k, v in values.items() if k not in extensions},
                   extra={k: v for k, v in values.items() if k in extensions})

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

    Subclasses set ``requires`` (exactly the optional PreferenceBatch fields they read), declare
    their hyperparameters as keyword arguments of ``__init__`` with the papers' defaults (validated
    there, stored as attributes of the same name), and implement ``compute``. ``name`` is set by
    ``register_objective``. ``__call__`` checks the required fields first.

    ``name`` and ``requires`` are class attributes for registered objectives, but composite
    objectives (``WeightedObjective``) set them per instance.
    """

    name: str = ""
    requires: frozenset[str] = frozenset()
    # The batch type's fields that ``requires`` names; a token-level (rollout) objective sets its own.
    field_table: ClassVar[FieldTable] = PREFERENCE_FIELDS
    # ε of the per-token clipped ratio in ``*_clipped_ratio_logps``: the engine needs it to compute them.
    token_ratio_clip: float | None = None

    def __call__(self, batch: PreferenceBatch | RolloutBatch) -> ObjectiveOutput:
        if type(batch).__name__ != self.field_table.batch:
            raise ConfigError(f"objective '{self.name}' trains on a {self.field_table.batch}, "
                              f"got a {type(batch).__name__}")
        batch.require(self.requires, self.name)
        return self.compute(batch)

    def compute(self, batch: PreferenceBatch | RolloutBatch) -> ObjectiveOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def needs_reference(self) -> bool:
        """True when a required field involves the reference (see ``selm.objectives.fields``)."""
        return self.field_table.needs_reference(self.requires)

    @property
    def needs_live_reference(self) -> bool:
        """True when the reference must run at every step, not once before training: for the
        per-token KL (TDPO), the per-token ratios (A-LoL seq) and the online samples' log-probs (HyPO)."""
        return self.field_table.needs_live_reference(self.requires)

    @property
    def reads_features(self) -> bool:
        """True when a field is a sparse autoencoder's pooled features (FPO): the trainer then needs
        an autoencoder (``selm.engine.FeatureProbe``)."""
        return any(spec.statistic == "features" for spec in self.field_table.select(self.requires))

    @property
    def response_roles(self) -> frozenset[str]:
        """The responses (``chosen``, ``rejected``, ``explore``, ``online``) the engine scores for this objective."""
        return self.field_table.response_roles(self.requires)

    def state_dict(self) -> dict[str, float]:
        """State that changes during training (LCPO's reliability), for checkpoints; {} for pure losses."""
        return {}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore what ``state_dict`` returned."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


OBJECTIVES: Registry[type[Objective]] = Registry("objective")


def register_objective(*names: str) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator: register an Objective subclass under one or more names.

    The first name is the canonical one: it becomes ``cls.name``, used in error messages and in
    the ``loss/<name>`` metric of weighted sums. The others are aliases.
    """

    def wrap(cls: type[Objective]) -> type[Objective]:
        cls.name = names[0]
        for name in names:
            OBJECTIVES.add(name, cls)
        return cls

    return wrap


def available_objectives(batch: str | None = None) -> list[str]:
    """The registered names (aliases included), sorted; with ``batch`` (``"PreferenceBatch"``,
    ``"RolloutBatch"``), only the objectives that train on that batch type."""
    names = OBJECTIVES.available()
    return names if batch is None else [name for name in names if OBJECTIVES.get(name).field_table.batch == batch]


def get_objective(name: str, **hyperparameters: float) -> Objective:
    """Build a registered objective by name.

    Raises ConfigError for an unknown name or an unknown / invalid hyperparameter.
    """
    cls = OBJECTIVES.get(name)
    known = hyperparameter_names(cls)
    unknown = sorted(set(hyperparameters) - set(known))
    if unknown:
        raise ConfigError(
            f"objective '{name}': unknown hyperparameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(known) or 'none'}"
        )
    return cls(**hyperparameters)


def hyperparameter_names(cls: type) -> tuple[str, ...]:
    """The keyword arguments of ``cls.__init__`` (an objective's, an advantage estimator's), in declaration order."""
    # A class without its own __init__ inherits object's (self, /, *args, **kwargs): no names.
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = inspect.signature(cls.__init__).parameters.values()
    return tuple(p.name for p in parameters if p.kind in named and p.name != "self")


def _check_number(objective: str, key: str, value: object, what: str = "objective") -> None:
    # YAML and CLI overrides can hand over strings, booleans or NaN; none of them is a valid scale.
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ConfigError(f"{what} '{objective}': {key} must be a finite number, got {value!r}")


def validate_positive(objective: str, *, what: str = "objective", **values: float) -> None:
    """Raise ConfigError unless every given hyperparameter is a finite number > 0.

    ``what`` names the kind of thing configured in the message (``"advantage estimator"``).
    """
    for key, value in values.items():
        _check_number(objective, key, value, what)
        if not value > 0:
            raise ConfigError(f"{what} '{objective}': {key} must be > 0, got {value}")


def validate_nonnegative(objective: str, *, what: str = "objective", **values: float) -> None:
    """Raise ConfigError unless every given hyperparameter is a finite number >= 0."""
    for key, value in values.items():
        _check_number(objective, key, value, what)
        if not value >= 0:
            raise ConfigError(f"{what} '{objective}': {key} must be >= 0, got {value}")


def validate_range(objective: str, key: str, value: float, low: float, high: float,
                   *, low_open: bool = False, high_closed: bool = False, what: str = "objective") -> None:
    """Raise ConfigError unless ``low <= value < high`` (``low < value`` if ``low_open``,
    ``value <= high`` if ``high_closed``)."""
    _check_number(objective, key, value, what)
    above_low = value > low if low_open else value >= low
    below_high = value <= high if high_closed else value < high
    if not (above_low and below_high):
        interval = f"{'(' if low_open else '['}{low}, {high}{']' if high_closed else ')'}"
        raise ConfigError(f"{what} '{objective}': {key} must be in {interval}, got {value}")
