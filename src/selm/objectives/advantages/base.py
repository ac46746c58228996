"""The advantage-estimator contract: judged rewards in, per-token advantages out.

A round samples n responses per prompt, judges each with a scalar reward, and turns the rewards
into advantages once, before its update epochs (``RolloutBatch.advantages``). An estimator is a
small class registered by name in ``ADVANTAGE_ESTIMATORS``, configured by the keyword arguments of
its ``__init__`` (the papers' defaults, validated there), and called on an ``AdvantageInputs``:

>>> import torch
>>> estimator = get_advantage_estimator("rloo", kl_coef=0.0)
>>> inputs = AdvantageInputs(rewards=torch.tensor([1.0, 0.0, 3.0, 3.0]), group_ids=torch.tensor([0, 0, 1, 1]),
...                          response_mask=torch.ones(4, 2, dtype=torch.bool))
>>> estimator(inputs).advantages[:, 0].tolist()
[1.0, -1.0, 0.0, 0.0]

Conventions, shared by every estimator (``selm.objectives.advantages.tokens``):

- Row b of every [B, T] tensor is response b; its tokens are a prefix of the row (right padding).
- Responses to the same prompt share a ``group_ids`` value; groups need not be contiguous or of
  equal size. A *group* estimator (GRPO, Dr. GRPO, RLOO, REINFORCE++-baseline) compares the
  responses of a prompt and refuses a group of one.
- KL in the reward (coefficient ``kl_coef`` = β, off when 0) uses k1 of the *sampling* policy,
  ``kl`` = log π_old − log π_ref per token: sequence estimators subtract β·Σ_t k1_t from the
  response's reward; token estimators (REINFORCE++, GAE) use the token rewards
  r_t = −β·k1_t + [t = last response token]·R. **The judge's reward sits on the last response
  token** (OpenRLHF's convention; TRL's PPO adds it one position later, after the last token).
- Advantages are 0 on padding; an estimator runs without gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from selm.errors import ConfigError
from selm.objectives.base import hyperparameter_names, validate_nonnegative
from selm.registry import Registry

WHAT = "advantage estimator"


@dataclass
class AdvantageInputs:
    """What an estimator may read about B judged responses.

    Attributes:
        rewards: [B] the judge's scalar reward per response, reward units; finite.
        group_ids: [B] integer; responses to the same prompt share a value.
        response_mask: [B, T] bool, True on response tokens (a prefix of each row).
        kl: [B, T] k1 = log π_old(y_t|…) − log π_ref(y_t|…) per token of the sampling policy,
            nats; needed when the estimator's ``kl_coef`` > 0.
        values: [B, T] V(x, y_<t), the critic's value of the state before token t, reward units
            (GAE).
    """

    rewards: torch.Tensor
    group_ids: torch.Tensor
    response_mask: torch.Tensor
    kl: torch.Tensor | None = None
    values: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.rewards.dim() != 1:
            raise ValueError(f"AdvantageInputs.rewards must have shape [B], got {tuple(self.rewards.shape)}")
        batch = self.rewards.shape[0]
        if self.group_ids.shape != (batch,) or self.group_ids.is_floating_point():
            raise ValueError(f"AdvantageInputs.group_ids must be integers of shape ({batch},), "
                             f"got {self.group_ids.dtype} {tuple(self.group_ids.shape)}")
        if self.response_mask.dtype != torch.bool or self.response_mask.dim() != 2 \
                or self.response_mask.shape[0] != batch:
            raise ValueError(f"AdvantageInputs.response_mask must be bool of shape [{batch}, T], "
                             f"got {self.response_mask.dtype} {tuple(self.response_mask.shape)}")
        for name in ("kl", "values"):
            value = getattr(self, name)
            if value is not None and value.shape != self.response_mask.shape:
                raise ValueError(f"AdvantageInputs.{name} has shape {tuple(value.shape)}, "
                                 f"expected {tuple(self.response_mask.shape)} like response_mask")
        if not bool(torch.isfinite(self.rewards).all()):
            raise ValueError("AdvantageInputs.rewards must be finite; the judge should have refused NaN or inf")
        # "Last response token" below assumes each response is a prefix of its row.
        if bool((self.response_mask[:, 1:] & ~self.response_mask[:, :-1]).any()):
            raise ValueError("AdvantageInputs.response_mask must be a prefix of each row (right padding)")

    @property
    def mask(self) -> torch.Tensor:
        """[B, T] the response mask in the rewards' dtype."""
        return self.response_mask.to(self.rewards.dtype)


@dataclass
class Advantages:
    """What an estimator returns.

    Attributes:
        advantages: [B, T] Â_t per response token, 0 on padding (a sequence advantage repeated
            over its tokens).
        returns: [B, T] value targets (GAE: Â + V before whitening), or None without a critic.
    """

    advantages: torch.Tensor
    returns: torch.Tensor | None = None


class AdvantageEstimator:
    """Base class of the estimators.

    Subclasses set ``name`` (registered with ``@ADVANTAGE_ESTIMATORS.register``), ``group_based``
    (compares the responses of a prompt: at least 2 per group), take their hyperparameters as
    keyword arguments of ``__init__`` (passing ``kl_coef`` up), and implement ``estimate``.

    Args:
        kl_coef: β ≥ 0 of the KL in the reward (k1 of the sampling policy); 0 turns it off.
    """

    name: ClassVar[str] = ""
    group_based: ClassVar[bool] = False

    def __init__(self, kl_coef: float = 0.0) -> None:
        validate_nonnegative(self.name, what=WHAT, kl_coef=kl_coef)
        self.kl_coef = float(kl_coef)

    @property
    def requires(self) -> frozenset[str]:
        """The optional ``AdvantageInputs`` fields read: ``kl`` when ``kl_coef`` > 0."""
        return frozenset({"kl"}) if self.kl_coef > 0 else frozenset()

    def __call__(self, inputs: AdvantageInputs) -> Advantages:
        """Check the inputs (required fields, group sizes) and estimate, without gradient.

        Raises:
            ConfigError: a required field is None, or a group estimator got a prompt with one sample.
        """
        for name in sorted(self.requires):
            if getattr(inputs, name) is None:
                raise ConfigError(f"{WHAT} '{self.name}' needs the field '{name}' of AdvantageInputs, but it is None")
        if self.group_based:
            smallest = int(torch.unique(inputs.group_ids, return_counts=True)[1].min())
            if smallest < 2:
                raise ConfigError(f"{WHAT} '{self.name}' compares the samples of each prompt and needs at least "
                                  f"2 per prompt (sampling.n), got a prompt with {smallest}")
        with torch.no_grad():
            return self.estimate(inputs)

    def estimate(self, inputs: AdvantageInputs) -> Advantages:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


def validate_flag(estimator: str, key: str, value: object) -> bool:
    """``value`` if it is a bool; otherwise a ConfigError naming the key (YAML's ``yes`` is a bool,
    the string ``"no"`` or the number 1 is not)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{WHAT} '{estimator}': {key} must be true or false, got {value!r}")
    return value


ADVANTAGE_ESTIMATORS: Registry[type[AdvantageEstimator]] = Registry(WHAT)

available_advantage_estimators = ADVANTAGE_ESTIMATORS.available


def get_advantage_estimator(name: str, **hyperparameters: Any) -> AdvantageEstimator:
    """Build a registered estimator by name.

    Raises:
        ConfigError: an unknown name, or an unknown or invalid hyperparameter.
    """
    cls = ADVANTAGE_ESTIMATORS.get(name)
    known = hyperparameter_names(cls)
    unknown = sorted(set(hyperparameters) - set(known))
    if unknown:
        raise ConfigError(f"{WHAT} '{name}': unknown hyperparameter(s) {', '.join(unknown)}; "
                          f"known: {', '.join(known) or 'none'}")
    return cls(**hyperparameters)


def build_advantage_estimator(spec: str | dict[str, Any]) -> AdvantageEstimator:
    """An estimator from a config value: a name (``"grpo"``) or a mapping of ``name`` and
    hyperparameters (``{"name": "gae", "lam": 0.95}``).

    Raises:
        ConfigError: a malformed spec, or as ``get_advantage_estimator``.
    """
    if isinstance(spec, str):
        return get_advantage_estimator(spec)
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        return get_advantage_estimator(spec["name"], **{k: v for k, v in spec.items() if k != "name"})
    raise ConfigError(f"{WHAT} must be a name or a mapping with a 'name' key, got {spec!r}")


def group_min(values: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """The smallest value of each response's group: [B], [B] -> [B]. Subtracted before summing, it
    makes the values of a group of equal rewards exactly 0, so their mean and their advantages
    come out exactly 0 too (a plain mean of 0.7, 0.7, 0.7 rounds to 0.6999999999999998)."""
    _, inverse = torch.unique(group_ids, return_inverse=True)
    smallest = torch.full((int(inverse.max()) + 1,), torch.inf, dtype=values.dtype, device=values.device)
    return smallest.scatter_reduce(0, inverse, values, "amin")[inverse]


def group_sums(values: torch.Tensor, group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ over each response's group, size of that group): [B], [B] -> [B], [B] (sizes in ``values``' dtype)."""
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(counts), dtype=values.dtype, device=values.device).index_add_(0, inverse, values)
    return sums[inverse], counts.to(values.dtype)[inverse]


def group_mean(values: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """The mean of each response's group: [B], [B] -> [B]; exact for a group of equal values."""
    offset = group_min(values, group_ids)
    sums, counts = group_sums(values - offset, group_ids)
    return offset + sums / counts


def group_std(values: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """The Bessel-corrected standard deviation of each response's group (÷ (n − 1), TRL's and
    torch.std's): [B], [B] -> [B]; groups of at least 2."""
    squares, counts = group_sums((values - group_mean(values, group_ids)).square(), group_ids)
    return (squares / (counts - 1)).sqrt()
