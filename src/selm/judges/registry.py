"""Judge kinds by name, and ``build_judge`` to make one from a config dict.

A spec is a mapping with ``kind`` and that kind's options, e.g.
``{"kind": "reward_model", "path": "my-rm", "max_length": 1024}``. Options are validated by the
kind's pydantic ``Options`` model: an unknown key, a missing required key or a wrong type is one
``ConfigError`` line naming the key. A new kind is a ``Judge`` subclass with ``kind`` and
``Options``, decorated with ``register_judge_kind`` (see docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from selm.config import validate
from selm.errors import ConfigError
from selm.judges.base import Judge
from selm.registry import Registry

JUDGE_KINDS: Registry[type[Judge]] = Registry("kind", key="judge", attribute="kind")

register_judge_kind = JUDGE_KINDS.register
available_judge_kinds = JUDGE_KINDS.available


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
        raise ConfigError(f"judge: required key 'kind' is missing; available: {', '.join(available_judge_kinds())}")
    cls = JUDGE_KINDS.get(kind)
    return cls(validate(cls.Options, options, source=f"judge '{kind}'"))
