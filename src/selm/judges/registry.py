"""Judge kinds by name, and ``build_judge`` to make one from a config dict.

A spec is a mapping with ``kind`` and that kind's options, e.g.
``{"kind": "reward_model", "path": "my-rm", "max_length": 1024}``. Options are validated by the
kind's pydantic ``Options`` model: an unknown key, a missing required key or a wrong type is one
``ConfigError`` line naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from selm.config import validate
from selm.errors import ConfigError
from selm.judges.base import Judge

J = TypeVar("J", bound=type[Judge])

_KINDS: dict[str, type[Judge]] = {}


def register_judge_kind(cls: J) -> J:
    """Class decorator: make a ``Judge`` subclass buildable as ``{kind: cls.kind, ...}``."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} has no kind")
    if _KINDS.get(cls.kind, cls) is not cls:
        raise ValueError(f"judge kind '{cls.kind}' is registered twice")
    _KINDS[cls.kind] = cls
    return cls


def available_judge_kinds() -> list[str]:
    """Sorted names of the registered judge kinds."""
    return sorted(_KINDS)


def build_judge(spec: Mapping[str, Any]) -> Judge:
    """Build a judge from ``spec`` (``kind`` + the kind's options).

    Raises:
        ConfigError: ``spec`` is not a mapping, ``kind`` is missing or unknown, or an option is
            unknown / missing / invalid (the message names the key).
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(f"judge: the spec must be a mapping with a 'kind', got {type(spec).__name__}")
    options = dict(spec)
    kind = options.pop("kind", None)
    if kind is None:
        raise ConfigError(f"judge: required key 'kind' is missing; kinds: {', '.join(available_judge_kinds())}")
    if kind not in _KINDS:
        raise ConfigError(f"judge: unknown kind '{kind}'; kinds: {', '.join(available_judge_kinds())}")
    cls = _KINDS[kind]
    return cls(validate(cls.Options, options, source=f"judge '{kind}'"))
