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
    "routes",
    "label_probs",
    "chosen_advantages",
    "rejected_advantages",
    "policy_online_logps",
    "reference_online_logps",
    "chosen_grad_norms",
    "rejected_grad_norms",
    "chosen_clipped_ratio_logps",
    "rejected_clipped_ratio_logps",
)

# Per-pair numbers that come with the data (written by the loop into pairs.jsonl and carried by
# TokenizedPair.extras), not computed by the log-prob engine.
PAIR_VALUE_FIELDS = frozenset({"routes", "label_probs", "chosen_advantages", "rejected_advantages"})

# Per-token ratio statistics of the engine (A-LoL seq): they need the reference at every step.
CLIPPED_RATIO_FIELDS = frozenset({"chosen_clipped_ratio_logps", "rejected_clipped_ratio_logps"})

# Fields of shape [B, k]: k online samples per pair (HyPO); every other field is [B].
ONLINE_FIELDS = frozenset({"policy_online_logps", "reference_online_logps"})


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

    def __post_init__(self) -> None:
        # A [B, 1] field would broadcast against [B] into [B, B] and give a wrong loss silently.
        if self.policy_chosen_logps.dim() != 1:
            raise ValueError(f"PreferenceBatch.policy_chosen_logps must have shape [B], "
                             f"got {tuple(self.policy_chosen_logps.shape)}")
        expected = tuple(self.policy_chosen_logps.shape)
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name in ONLINE_FIELDS:
                if value.dim() != 2 or value.shape[0] != expected[0]:
                    raise ValueError(f"PreferenceBatch.{f.name} has shape {tuple(value.shape)}, "
                                     f"expected [{expected[0]}, k]")
            elif tuple(value.shape) != expected:
                raise ValueError(f"PreferenceBatch.{f.name} has shape {tuple(value.shape)}, "
                                 f"expected {expected} like policy_chosen_logps")

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
    # ε of the per-token clipped ratio in ``*_clipped_ratio_logps``: the engine needs it to compute them.
    token_ratio_clip: float | None = None

    def __call__(self, batch: PreferenceBatch) -> ObjectiveOutput:
        batch.require(self.requires, self.name)
        return self.compute(batch)

    def compute(self, batch: PreferenceBatch) -> ObjectiveOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def needs_reference(self) -> bool:
        return bool(self.requires & {"reference_chosen_logps", "reference_rejected_logps",
                                     "reference_explore_logps", "chosen_seq_kl", "rejected_seq_kl",
                                     "reference_online_logps", *CLIPPED_RATIO_FIELDS})

    @property
    def needs_live_reference(self) -> bool:
        """True when the reference must run at every step, not once before training: for the
        per-token KL (TDPO), the per-token ratios (A-LoL seq) and the online samples' log-probs (HyPO)."""
        return bool(self.requires & {"chosen_seq_kl", "rejected_seq_kl", "reference_online_logps",
                                     *CLIPPED_RATIO_FIELDS})

    def state_dict(self) -> dict[str, float]:
        """State that changes during training (LCPO's reliability), for checkpoints; {} for pure losses."""
        return {}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore what ``state_dict`` returned."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


_REGISTRY: dict[str, type[Objective]] = {}


def register_objective(*names: str) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator: register an Objective subclass under one or more names.

    The first name is the canonical one: it becomes ``cls.name``, used in error messages and in
    the ``loss/<name>`` metric of weighted sums. The others are aliases.
    """

    def wrap(cls: type[Objective]) -> type[Objective]:
        cls.name = names[0]
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
    known = hyperparameter_names(cls)
    unknown = sorted(set(hyperparameters) - set(known))
    if unknown:
        raise ConfigError(
            f"objective '{name}': unknown hyperparameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(known) or 'none'}"
        )
    return cls(**hyperparameters)


def hyperparameter_names(cls: type[Objective]) -> tuple[str, ...]:
    """The keyword arguments of ``cls.__init__``, in declaration order."""
    # A class without its own __init__ inherits object's (self, /, *args, **kwargs): no names.
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = inspect.signature(cls.__init__).parameters.values()
    return tuple(p.name for p in parameters if p.kind in named and p.name != "self")


def batch_fields() -> tuple[str, ...]:
    """Names of every PreferenceBatch field."""
    return tuple(f.name for f in fields(PreferenceBatch))


def _check_number(objective: str, key: str, value: object) -> None:
    # YAML and CLI overrides can hand over strings, booleans or NaN; none of them is a valid scale.
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ConfigError(f"objective '{objective}': {key} must be a finite number, got {value!r}")


def validate_positive(objective: str, **values: float) -> None:
    """Raise ConfigError unless every given hyperparameter is a finite number > 0."""
    for key, value in values.items():
        _check_number(objective, key, value)
        if not value > 0:
            raise ConfigError(f"objective '{objective}': {key} must be > 0, got {value}")


def validate_nonnegative(objective: str, **values: float) -> None:
    """Raise ConfigError unless every given hyperparameter is a finite number >= 0."""
    for key, value in values.items():
        _check_number(objective, key, value)
        if not value >= 0:
            raise ConfigError(f"objective '{objective}': {key} must be >= 0, got {value}")


def validate_range(objective: str, key: str, value: float, low: float, high: float,
                   *, low_open: bool = False) -> None:
    """Raise ConfigError unless ``low <= value < high`` (``low < value < high`` if ``low_open``)."""
    _check_number(objective, key, value)
    above_low = value > low if low_open else value >= low
    if not (above_low and value < high):
        interval = f"{'(' if low_open else '['}{low}, {high})"
        raise ConfigError(f"objective '{objective}': {key} must be in {interval}, got {value}")
