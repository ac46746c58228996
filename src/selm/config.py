"""Typed, validated configuration: a YAML file plus ``key=value`` overrides.

Configs are pydantic models with ``extra="forbid"``, so an unknown key, a wrong type or a value
out of range becomes one ``ConfigError`` line naming the key (``train.learning_rate: ...``)
before any work starts. YAML is read with ``yaml.safe_load`` only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from selm.errors import ConfigError

T = TypeVar("T", bound=BaseModel)
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader; a missing file or bad YAML is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides in place; values are parsed as YAML scalars/lists.

    >>> apply_overrides({"train": {"lr": 1}}, ["train.lr=0.5", "seed=3"])
    {'train': {'lr': 0.5}, 'seed': 3}
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value (e.g. train.learning_rate=1e-5)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override '{item}' has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 5e-7 (no dot) as a string
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
            node = child
        node[parts[-1]] = value
    return data


def format_validation_error(exc: ValidationError, source: str = "") -> str:
    """One line: the first error's dotted key and message (and how many more there are)."""
    errors = exc.errors()
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required key is missing"
    value = first.get("input")
    shown = "" if first["type"] in ("extra_forbidden", "missing") or isinstance(value, dict) else f" (got {value!r})"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    prefix = f"{source}: " if source else ""
    where = f"{loc}: " if loc else ""
    return f"{prefix}{where}{msg}{shown}{more}"


def validate(model: type[T], data: dict[str, Any], source: str = "") -> T:
    """Validate ``data`` against ``model``; any error is a one-line ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_config(model: type[T], path: str | Path | None, overrides: list[str] | None = None,
                defaults: dict[str, Any] | None = None) -> T:
    """Load ``path`` (or ``defaults`` when None), apply overrides, validate against ``model``."""
    data = read_yaml(path) if path is not None else dict(defaults or {})
    apply_overrides(data, list(overrides or []))
    return validate(model, data, str(path) if path is not None else "config")


def dump_config(config: BaseModel) -> str:
    """The fully resolved config as YAML (round-trips through ``load_config``)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
