"""The token-level training example of the RL family: B sampled responses with per-token statistics.

A pair objective (DPO, SELM, ...) reads summed log-probs of chosen/rejected responses
(:class:`selm.objectives.PreferenceBatch`); a rollout objective (GRPO, RLOO, PPO, ...) reads, per
response token, the policy's log-prob, the log-prob under the policy that sampled it, the
reference's, and the advantage the round computed once before its update epochs.

Every tensor is [B, T]: row b is response b, T the longest response of the batch, positions past a
response's end hold 0 and ``response_mask`` False. What each field is and where it comes from is
``ROLLOUT_FIELDS``, the same kind of table as the pairs' (``selm.objectives.fields``).

How a batch loss is formed (``RolloutMixin.loss_normalizer``): the objective returns one value
per response, ``losses`` [B], and the trainer divides their sum over the global batch (every
micro-batch and process of one optimizer step) by

- ``"sequences"``: the number of responses (GRPO's mean of per-sequence token means; Dr. GRPO's
  token sums over a constant; RLOO's sequence-level loss);
- ``"tokens"``: the number of response tokens (DAPO's token mean over the global batch);
- ``"micro_batch_tokens"``: each micro-batch's own tokens (TRL's ``bnpo``), then averaged over
  micro-batches.

``micro_batch_loss`` is that division, written once: the trainer backpropagates each micro-batch's
share. The four aggregations of TRL's ``loss_type`` are ``aggregate_token_losses`` (per-token
losses [B, T] -> ``losses`` [B]) plus the normaliser ``LOSS_NORMALIZERS[loss_type]``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, Literal

import torch

from selm.errors import ConfigError
from selm.objectives.fields import FieldSpec, FieldTable, ReferenceUse, Source

LossNormalizer = Literal["sequences", "tokens", "micro_batch_tokens"]

_BT = ("B", "T")
ROLLOUT_FIELDS = FieldTable("RolloutBatch", ("response",), (
    #         name                      source             statistic      role        reference                   shape
    FieldSpec("policy_token_logps",     Source.POLICY,     "token_logps", "response", ReferenceUse.NONE,          _BT, always=True),
    FieldSpec("response_mask",          Source.ROLLOUT,    "mask",        "response", ReferenceUse.NONE,          _BT, always=True),
    FieldSpec("sampling_token_logps",   Source.ROLLOUT,    "token_logps", "response", ReferenceUse.NONE,          _BT),
    FieldSpec("reference_token_logps",  Source.REFERENCE,  "token_logps", "response", ReferenceUse.PRECOMPUTABLE, _BT),
    FieldSpec("advantages",             Source.ROLLOUT,    "advantage",   "response", ReferenceUse.NONE,          _BT),
    FieldSpec("token_entropies",        Source.POLICY,     "entropy",     "response", ReferenceUse.NONE,          _BT),
    FieldSpec("values",                 Source.POLICY,     "values",      "response", ReferenceUse.NONE,          _BT),
    FieldSpec("old_values",             Source.ROLLOUT,    "values",      "response", ReferenceUse.NONE,          _BT),
    FieldSpec("returns",                Source.ROLLOUT,    "return",      "response", ReferenceUse.NONE,          _BT),
    FieldSpec("objective_advantages",   Source.ROLLOUT,    "advantage",   "response", ReferenceUse.NONE,          ("B", "T", "K")),
    FieldSpec("termination_token_logps", Source.POLICY,    "termination_logps", "response", ReferenceUse.NONE,    _BT),
    FieldSpec("prefix_rewards",         Source.ROLLOUT,    "prefix_reward", "response", ReferenceUse.NONE,        _BT),
))
# The fields the round's advantage estimator makes: an objective that reads none of them (GFlowNet
# fine-tuning) needs no estimator, and none is run for it.
ESTIMATED_FIELDS = frozenset({"advantages", "returns", "objective_advantages"})


@dataclass
class RolloutBatch:
    """Per-token statistics of B sampled responses (see ``ROLLOUT_FIELDS`` for the sources).

    Attributes:
        policy_token_logps: [B, T] log π_θ(y_t | x, y_<t), nats; 0 where ``response_mask`` is False.
        response_mask: [B, T] bool, True on response tokens.
        sampling_token_logps: [B, T] log π_old(y_t | …) of the policy that sampled the batch (the
            round-start weights), fixed across update epochs; the importance ratio is
            ρ_t = exp(policy − sampling).
        reference_token_logps: [B, T] log π_ref(y_t | …).
        advantages: [B, T] Â_t, from an advantage estimator (a sequence advantage is broadcast
            over its tokens), fixed across update epochs.
        token_entropies: [B, T] H(π_θ(· | x, y_<t)), nats.
        values: [B, T] V_θ(x, y_≤t) of the value head, reward units.
        old_values: [B, T] the value head's predictions when the batch was sampled.
        returns: [B, T] value targets (advantages + old values for GAE), reward units.
        objective_advantages: [B, T, K] one advantage per objective (the estimator run on each
            reward column of a ``vector`` judge; PAMA), fixed across update epochs.
        termination_token_logps: [B, T] log π_θ(⊤ | x, y_<t): the policy's log-prob of ending the
            response (EOS) at the state before token t, nats (GFlowNet fine-tuning).
        prefix_rewards: [B, T] the judge's score of the prefix y_<t as a complete response (the
            state before token t; position 0: the empty response), reward units.
    """

    policy_token_logps: torch.Tensor
    response_mask: torch.Tensor
    sampling_token_logps: torch.Tensor | None = None
    reference_token_logps: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    token_entropies: torch.Tensor | None = None
    values: torch.Tensor | None = None
    old_values: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    objective_advantages: torch.Tensor | None = None
    termination_token_logps: torch.Tensor | None = None
    prefix_rewards: torch.Tensor | None = None

    def __post_init__(self) -> None:
        ROLLOUT_FIELDS.check_shapes({f.name: getattr(self, f.name) for f in fields(self)})
        if self.response_mask.dtype != torch.bool:
            raise ValueError(f"RolloutBatch.response_mask must be bool, got {self.response_mask.dtype}")

    def require(self, names: frozenset[str] | set[str], objective: str) -> None:
        """Raise a ConfigError naming the first field in ``names`` that is None."""
        for name in sorted(names):
            if getattr(self, name) is None:
                raise ConfigError(f"objective '{objective}' needs the field '{name}' of RolloutBatch, but it is None")

    @property
    def batch_size(self) -> int:
        return int(self.policy_token_logps.shape[0])

    @property
    def mask(self) -> torch.Tensor:
        """[B, T] the response mask in the log-probs' dtype, for masked sums."""
        return self.response_mask.to(self.policy_token_logps.dtype)

    @property
    def lengths(self) -> torch.Tensor:
        """[B] response tokens per row (float, as a normaliser)."""
        return self.mask.sum(-1)


class RolloutMixin:
    """What makes an objective a rollout objective: its field table and how its losses are normalised.

    Mixed into :class:`selm.objectives.base.Objective` subclasses (``class GRPOLoss(RolloutMixin,
    Objective)``), so registration, hyperparameter checks and ``requires`` work as for pairs.
    ``loss_normalizer`` is a class attribute, or a property where a hyperparameter chooses it
    (``grpo``'s ``loss_type``).
    """

    field_table: ClassVar[FieldTable] = ROLLOUT_FIELDS
    loss_normalizer: LossNormalizer = "sequences"


LossType = Literal["grpo", "bnpo", "dr_grpo", "dapo"]
# TRL's ``loss_type`` names (GRPOConfig) and what each becomes here: how a response's per-token
# losses are reduced to its ``losses`` entry (``aggregate_token_losses``), and the normaliser.
LOSS_NORMALIZERS: dict[str, LossNormalizer] = {
    "grpo": "sequences",  # mean over each response's tokens, then over responses
    "bnpo": "micro_batch_tokens",  # token sum ÷ the micro-batch's tokens, averaged over micro-batches
    "dr_grpo": "sequences",  # token sum ÷ max_completion_length, then mean over responses
    "dapo": "tokens",  # token sum ÷ the whole step's tokens
}
LOSS_TYPES = tuple(LOSS_NORMALIZERS)


def check_loss_type(objective: str, loss_type: object, max_completion_length: object) -> None:
    """Raise ConfigError unless ``loss_type`` is one of ``LOSS_TYPES`` and ``max_completion_length``
    is a positive int exactly when ``loss_type`` is ``dr_grpo`` (None otherwise)."""
    if loss_type not in LOSS_NORMALIZERS:
        raise ConfigError(f"objective '{objective}': loss_type must be one of {', '.join(LOSS_TYPES)}, got {loss_type!r}")
    if loss_type == "dr_grpo":
        if isinstance(max_completion_length, bool) or not isinstance(max_completion_length, int) \
                or max_completion_length < 1:
            raise ConfigError(f"objective '{objective}': loss_type dr_grpo divides by a constant length: set "
                              f"max_completion_length to the sampler's max_new_tokens, got {max_completion_length!r}")
    elif max_completion_length is not None:
        raise ConfigError(f"objective '{objective}': max_completion_length is only used by loss_type dr_grpo, "
                          f"got it with loss_type {loss_type}")


def aggregate_token_losses(token_losses: torch.Tensor, mask: torch.Tensor, loss_type: LossType,
                           max_completion_length: int | None = None) -> torch.Tensor:
    """One loss per response from per-token losses, for ``loss_type`` (with ``LOSS_NORMALIZERS``).

    Args:
        token_losses: [B, T] ℓ_t; finite everywhere (padding is multiplied by 0, not selected).
        mask: [B, T] the response mask in the losses' dtype (``RolloutBatch.mask``).
        loss_type: ``grpo``: Σ_t m_t·ℓ_t / max(|y|, 1); ``bnpo`` and ``dapo``: Σ_t m_t·ℓ_t;
            ``dr_grpo``: Σ_t m_t·ℓ_t / L_max.
        max_completion_length: L_max, the sampler's token budget (``dr_grpo`` only).

    Returns:
        [B] in the losses' unit.
    """
    summed = (token_losses * mask).sum(-1)
    if loss_type == "grpo":
        return summed / mask.sum(-1).clamp(min=1.0)
    if loss_type == "dr_grpo":
        return summed / max_completion_length
    return summed


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ m·x / max(Σ m, 1) over every element: [B, T], [B, T] -> scalar (the token mean of a metric)."""
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


@dataclass(frozen=True)
class StepTotals:
    """Counts over one optimizer step: every micro-batch of every process (the trainer sums them
    across processes before the step's first backward).

    Attributes:
        sequences: responses in the step.
        tokens: response tokens (True entries of the response masks) in the step.
        micro_batches: micro-batches in the step, all processes together.
    """

    sequences: int
    tokens: int
    micro_batches: int


def micro_batch_loss(losses: torch.Tensor, response_mask: torch.Tensor, normalizer: LossNormalizer,
                     totals: StepTotals) -> torch.Tensor:
    """One micro-batch's share of its optimizer step's loss: scalar.

    The step loss is the sum of these shares over all micro-batches of all processes:
    Σ losses / ``totals.sequences`` (``sequences``), Σ losses / ``totals.tokens`` (``tokens``), or
    the mean over micro-batches of Σ losses / the micro-batch's own tokens (``micro_batch_tokens``).
    Backpropagating each share (times the number of processes under DDP, which averages
    gradients) accumulates the step loss's gradient.

    Args:
        losses: [B] the objective's ``losses`` for this micro-batch.
        response_mask: [B, T] bool, this micro-batch's response tokens.
        normalizer: the objective's ``loss_normalizer``.
        totals: the whole step's counts.
    """
    total = losses.sum()
    if normalizer == "sequences":
        return total / max(totals.sequences, 1)
    if normalizer == "tokens":
        return total / max(totals.tokens, 1)
    return total / response_mask.sum().clamp(min=1) / max(totals.micro_batches, 1)
