"""What an objective may read: one declarative table per batch type, and everything that follows from it.

Each row of a table names one field of the batch and says where its value comes from (the policy's
engine forward, a reference forward, a number the data carries per pair, or per-sequence gradient
norms), whether it involves the reference (precomputable once before training, or live at every
step), which response's rows it is made of, which statistic it is, and its shape in named axes.

From that one table follow: the optional fields, the per-pair values the loop writes, whether an
objective needs a reference and whether it must be live (``Objective.needs_reference`` /
``needs_live_reference``), which response rows a collated batch must hold
(``Objective.response_roles``), the batch's shape checks, which fields trade places when a pair's
label is flipped, and what the trainer asks the engine for. An objective that needs an existing
field only lists it in ``requires``; a new field of a statistic the engine already computes is one
dataclass attribute plus one row here.

Shapes are tuples of axis names: "B" (pairs), "k" (samples per pair); a token-level batch type
(rollouts: [B, T] per-token log-probs, masks, advantages) gets its own table over axis "T" and
uses the same checks and derivations.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, replace

import torch


class Source(enum.Enum):
    """Where a field's value comes from."""

    POLICY = "policy"  # the log-prob engine's forward of the policy over the response rows (gradient in training)
    REFERENCE = "reference"  # the reference's summed log-probs of the response rows (no gradient)
    PAIR_VALUE = "pair value"  # a number per pair carried by the data (pairs.jsonl -> TokenizedPair.extras)
    GRADIENT = "gradient"  # per-sequence gradient norms of the policy (one backward per sequence)
    ROLLOUT = "rollout"  # fixed for a rollout, computed once after sampling: masks, sampling log-probs, advantages


class ReferenceUse(enum.Enum):
    """How a field involves the reference model."""

    NONE = "none"
    PRECOMPUTABLE = "precomputable"  # fixed during training: computed once, cached on disk
    LIVE = "live"  # needs the reference at every step: per-token statistics, or samples only the step knows


@dataclass(frozen=True)
class FieldSpec:
    """One batch field.

    Attributes:
        name: the batch dataclass attribute.
        source: where the value comes from.
        statistic: what the value is. POLICY: the ``SequenceStats`` attribute (``logps``,
            ``lengths``, ``kl``, ``clipped_ratio_logps``); REFERENCE: ``logps``; GRADIENT:
            ``grad_norm``; PAIR_VALUE: the kind of number (``route``, ``label_prob``, ``advantage``).
        role: the response it describes (one of its table's ``roles``), or None for a value of the whole pair.
        reference: whether and how the reference is involved.
        shape: axis names, e.g. ("B",) or ("B", "k").
        always: every batch carries it (a dataclass attribute without default).
        extension: added by :meth:`FieldTable.register` (an objective's own field), carried in
            the batch's ``extra`` mapping rather than as a dataclass attribute.
    """

    name: str
    source: Source
    statistic: str
    role: str | None = None
    reference: ReferenceUse = ReferenceUse.NONE
    shape: tuple[str, ...] = ("B",)
    always: bool = False
    extension: bool = False

    def __post_init__(self) -> None:
        if self.source is Source.REFERENCE and self.reference is ReferenceUse.NONE:
            raise ValueError(f"field {self.name}: a value from the reference must say how it uses it")

    @property
    def scored(self) -> bool:
        """True when the value is read off response rows that a collated batch must hold."""
        return self.source in (Source.POLICY, Source.REFERENCE)

    def arrange(self, rows: torch.Tensor, num_pairs: int) -> torch.Tensor:
        """The value of this field from its role's rows: [B·k] -> [B, k] for a ("B", "k") field.

        Counts (response lengths) arrive as integers and become float32, as objectives read them.
        """
        value = rows.view(num_pairs, -1) if len(self.shape) == 2 else rows
        return value if value.is_floating_point() else value.float()


@dataclass
class FieldTable:
    """The fields of one batch type, in its dataclass order, and what follows from a set of them.

    Attributes:
        batch: the batch type's name, for messages.
        roles: the responses its fields describe, in the order a collated batch stacks their rows.
        specs: one FieldSpec per dataclass attribute, in declaration order.
    """

    batch: str
    roles: tuple[str, ...]
    specs: tuple[FieldSpec, ...]

    def __post_init__(self) -> None:
        names = [spec.name for spec in self.specs]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.batch}: a field is listed twice in {names}")
        for spec in self.specs:
            if spec.role is not None and spec.role not in self.roles:
                raise ValueError(f"{self.batch}.{spec.name}: role must be one of {self.roles} or None, got {spec.role!r}")

    def register(self, spec: FieldSpec) -> FieldSpec:
        """Add an objective's own field, so that a loss needing new data is one file.

        The trainer fills it like any other field of its source: a PAIR_VALUE field from the pair's
        ``extras`` (for ``selm train``, a numeric dataset column of the same name), a POLICY or
        REFERENCE field from an engine statistic of one of the table's roles. Registering the same
        spec again is a no-op (a module imported twice).

        Raises:
            ValueError: the name is taken by another field, or the spec is ``always`` or names
                an unknown role.
        """
        spec = replace(spec, extension=True)
        if spec.name in self:
            if self[spec.name] == spec:
                return spec
            raise ValueError(f"{self.batch} already has a field '{spec.name}'")
        if spec.always:
            raise ValueError(f"{self.batch}.{spec.name}: an extension field cannot be always present")
        if spec.role is not None and spec.role not in self.roles:
            raise ValueError(f"{self.batch}.{spec.name}: role must be one of {self.roles} or None, got {spec.role!r}")
        self.specs = (*self.specs, spec)
        return spec

    @contextlib.contextmanager
    def temporary_registrations(self) -> Iterator[None]:
        """Forget, on exit, the fields registered inside (for tests and notebooks)."""
        specs = self.specs
        try:
            yield
        finally:
            self.specs = specs

    @property
    def extensions(self) -> frozenset[str]:
        """Names of the fields added with :meth:`register`."""
        return frozenset(spec.name for spec in self.specs if spec.extension)

    def __iter__(self) -> Iterator[FieldSpec]:
        return iter(self.specs)

    def __contains__(self, name: object) -> bool:
        return any(spec.name == name for spec in self.specs)

    def __getitem__(self, name: str) -> FieldSpec:
        for spec in self.specs:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.batch} has no field '{name}'")

    @property
    def optional(self) -> tuple[str, ...]:
        """Names of the fields a batch may leave None, in declaration order."""
        return tuple(spec.name for spec in self.specs if not spec.always)

    def names_where(self, **criteria: object) -> frozenset[str]:
        """Names of the fields whose attributes equal ``criteria``, e.g. ``source=Source.PAIR_VALUE``."""
        return frozenset(spec.name for spec in self.specs
                         if all(getattr(spec, key) == value for key, value in criteria.items()))

    def select(self, names: Collection[str]) -> tuple[FieldSpec, ...]:
        """The specs of ``names`` plus the always-present fields, in declaration order.

        Raises:
            ValueError: a name is not a field of this batch type.
        """
        unknown = sorted(set(names) - {spec.name for spec in self.specs})
        if unknown:
            raise ValueError(f"{self.batch} has no field(s) {', '.join(unknown)}")
        return tuple(spec for spec in self.specs if spec.always or spec.name in names)

    def needs_reference(self, names: Collection[str]) -> bool:
        """True when any of ``names`` involves the reference."""
        return any(spec.reference is not ReferenceUse.NONE for spec in self.select(names))

    def needs_live_reference(self, names: Collection[str]) -> bool:
        """True when any of ``names`` needs the reference at every step, not once before training."""
        return any(spec.reference is ReferenceUse.LIVE for spec in self.select(names))

    def response_roles(self, names: Collection[str]) -> frozenset[str]:
        """The responses whose rows a collated batch must hold to give ``names`` (and the
        always-present fields) their values."""
        return frozenset(spec.role for spec in self.select(names) if spec.scored)

    def counterparts(self, role: str, other: str) -> tuple[tuple[str, str], ...]:
        """(field of ``role``, field of ``other``) pairs of the same source and statistic, e.g.
        (``chosen_lengths``, ``rejected_lengths``) for ``("chosen", "rejected")``."""
        found = {(spec.source, spec.statistic): spec.name for spec in self.specs if spec.role == other}
        return tuple((spec.name, found[spec.source, spec.statistic]) for spec in self.specs
                     if spec.role == role and (spec.source, spec.statistic) in found)

    def check_shapes(self, values: Mapping[str, torch.Tensor | None]) -> None:
        """Check every given value against its named axes; an axis takes its size from the first
        field that has it (``B`` from the first field of the table).

        Raises:
            ValueError: naming the field, its shape and the expected one. A [B, 1] field would
                broadcast against [B] into [B, B] and give a wrong loss silently.
        """
        sizes: dict[str, int] = {}
        for spec in self.specs:
            value = values.get(spec.name)
            if value is None:
                continue
            shape = tuple(value.shape)
            known = [sizes.get(axis) for axis in spec.shape]
            if len(shape) == len(spec.shape) and all(k is None or k == n for k, n in zip(known, shape)):
                sizes.update(zip(spec.shape, shape))
                continue
            axes = f"[{', '.join(spec.shape)}]"
            if all(k is None for k in known):
                raise ValueError(f"{self.batch}.{spec.name} must have shape {axes}, got {shape}")
            expected: object = (tuple(known) if all(k is not None for k in known)
                                else f"[{', '.join(axis if k is None else str(k) for axis, k in zip(spec.shape, known))}]")
            raise ValueError(f"{self.batch}.{spec.name} has shape {shape}, expected {expected}, i.e. {axes}")


_POLICY, _REF, _PAIR, _GRAD = Source.POLICY, Source.REFERENCE, Source.PAIR_VALUE, Source.GRADIENT
_NO, _PRE, _LIVE = ReferenceUse.NONE, ReferenceUse.PRECOMPUTABLE, ReferenceUse.LIVE
_B, _BK = ("B",), ("B", "k")

PREFERENCE_FIELDS = FieldTable("PreferenceBatch", ("chosen", "rejected", "explore", "online"), (
    #         name                            source   statistic              role        reference shape
    FieldSpec("policy_chosen_logps",          _POLICY, "logps",               "chosen",   _NO,   _B, always=True),
    FieldSpec("policy_rejected_logps",        _POLICY, "logps",               "rejected", _NO,   _B, always=True),
    FieldSpec("reference_chosen_logps",       _REF,    "logps",               "chosen",   _PRE,  _B),
    FieldSpec("reference_rejected_logps",     _REF,    "logps",               "rejected", _PRE,  _B),
    FieldSpec("chosen_lengths",               _POLICY, "lengths",             "chosen",   _NO,   _B),
    FieldSpec("rejected_lengths",             _POLICY, "lengths",             "rejected", _NO,   _B),
    FieldSpec("policy_explore_logps",         _POLICY, "logps",               "explore",  _NO,   _B),
    FieldSpec("reference_explore_logps",      _REF,    "logps",               "explore",  _PRE,  _B),
    FieldSpec("chosen_seq_kl",                _POLICY, "kl",                  "chosen",   _LIVE, _B),
    FieldSpec("rejected_seq_kl",              _POLICY, "kl",                  "rejected", _LIVE, _B),
    FieldSpec("routes",                       _PAIR,   "route",               None,       _NO,   _B),
    FieldSpec("label_probs",                  _PAIR,   "label_prob",          None,       _NO,   _B),
    FieldSpec("chosen_advantages",            _PAIR,   "advantage",           "chosen",   _NO,   _B),
    FieldSpec("rejected_advantages",          _PAIR,   "advantage",           "rejected", _NO,   _B),
    FieldSpec("policy_online_logps",          _POLICY, "logps",               "online",   _NO,   _BK),
    # The online samples are the round's, known only when the step runs: nothing to cache.
    FieldSpec("reference_online_logps",       _REF,    "logps",               "online",   _LIVE, _BK),
    FieldSpec("chosen_grad_norms",            _GRAD,   "grad_norm",           "chosen",   _NO,   _B),
    FieldSpec("rejected_grad_norms",          _GRAD,   "grad_norm",           "rejected", _NO,   _B),
    FieldSpec("chosen_clipped_ratio_logps",   _POLICY, "clipped_ratio_logps", "chosen",   _LIVE, _B),
    FieldSpec("rejected_clipped_ratio_logps", _POLICY, "clipped_ratio_logps", "rejected", _LIVE, _B),
))

OPTIONAL_FIELDS = PREFERENCE_FIELDS.optional
# Numbers the loop writes into each pairs.jsonl row and TokenizedPair.extras carries to the trainer.
PAIR_VALUE_FIELDS = PREFERENCE_FIELDS.names_where(source=Source.PAIR_VALUE)
# The engine computes these only with the objective's ``token_ratio_clip``.
CLIPPED_RATIO_FIELDS = PREFERENCE_FIELDS.names_where(statistic="clipped_ratio_logps")
