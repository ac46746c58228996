"""Typed, validated configuration: a YAML file plus ``key=value`` overrides.

Configs are pydantic models with ``extra="forbid"``, so an unknown key, a wrong type or a value
out of range becomes one ``ConfigError`` line naming the key (``train.learning_rate: ...``)
before any work starts. YAML is read with ``yaml.safe_load`` only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

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


# A section's key that says what the section is: changing it makes the other keys meaningless.
IDENTITY_KEYS = ("kind", "name")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides in place; values are parsed as YAML scalars/lists.

    An override that changes a section's ``kind`` or ``name`` (``judge.kind=function``) replaces
    the section: the keys of the old kind do not leak into the new one, except those set by the
    other overrides.

    >>> apply_overrides({"train": {"lr": 1}}, ["train.lr=0.5", "seed=3"])
    {'train': {'lr': 0.5}, 'seed': 3}
    >>> apply_overrides({"judge": {"kind": "gold", "task": "sort"}}, ["judge.callable=f.py:score", "judge.kind=function"])
    {'judge': {'callable': 'f.py:score', 'kind': 'function'}}
    """
    assigned: dict[int, set[str]] = {}
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
        last = parts[-1]
        if len(parts) > 1 and last in IDENTITY_KEYS and last in node and node[last] != value:
            for other in [k for k in node if k not in assigned.get(id(node), set())]:
                del node[other]
        node[last] = value
        assigned.setdefault(id(node), set()).add(last)
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
    """Load ``path`` (or ``defaults`` when None), apply overrides, validate against ``model``.

    An override into a section the file does not have (``train.logging_steps=7``) starts the
    section from its default value (for a run, the quickstart's training block), so one override
    changes one key instead of resetting the section to its fields' own defaults.
    """
    data = read_yaml(path) if path is not None else dict(defaults or {})
    if path is not None:
        resolve_paths(data, Path(path).resolve().parent)
    overrides = list(overrides or [])
    _start_sections_from_defaults(model, data, overrides)
    apply_overrides(data, overrides)
    resolve_paths(data, Path.cwd())
    return validate(model, data, str(path) if path is not None else "config")


# Keys whose string values may be local files or folders (data, models, templates).
PATH_KEYS = frozenset({"dataset", "eval_dataset", "train", "eval", "model_name_or_path", "tokenizer_name_or_path",
                       "reference_model_name_or_path", "critic_model", "chat_template"})


def resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Make relative paths absolute, in place, where they name something that exists under ``base``.

    ``load_config`` resolves a recipe's own paths against the recipe's folder first, then what is
    still relative (overrides, paths from the working directory) against the working directory, so
    the run's config.yaml names the same files wherever ``--resume`` is run from. Values under
    :data:`PATH_KEYS` and the file of a ``file.py:function`` judge callable are paths; anything
    that does not exist (a hub id, ``builtin:``, a missing file that a later check names) is kept.
    """
    for key, value in data.items():
        if isinstance(value, dict):
            resolve_paths(value, base)
        elif isinstance(value, str) and key in PATH_KEYS:
            data[key] = _absolute(value, base)
        elif isinstance(value, str) and key == "callable" and ".py:" in value:
            file, _, function = value.rpartition(":")
            data[key] = f"{_absolute(file, base)}:{function}"


def _absolute(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str((base / path).resolve()) if not path.is_absolute() and (base / path).exists() else value


def _start_sections_from_defaults(model: type[BaseModel], data: dict[str, Any], overrides: list[str]) -> None:
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        section = key.split(".", 1)[0]
        field = model.model_fields.get(section)
        if "." not in key or section in data or field is None:
            continue
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            data[section] = default.model_dump(mode="json")


def dump_config(config: BaseModel) -> str:
    """The fully resolved config as YAML (round-trips through ``load_config``)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


@dataclass(frozen=True)
class ConfigKey:
    """One documented key of a config: what ``--help-config`` prints.

    Attributes:
        path: dotted path, as written in overrides (``train.learning_rate``).
        type: the accepted values (``float``, ``chunks|resample``, ``section | null``, ...).
        default: the default as YAML would read it (``0.0001``, ``null``, ``"hf"``); ``required``
            when the key has none, empty for a section that always exists.
        description: the field's one-line meaning.
    """

    path: str
    type: str
    default: str
    description: str


def config_keys(model: type[BaseModel], prefix: str = "", defaults: BaseModel | None = None) -> list[ConfigKey]:
    """Every key of ``model``, sections first then their keys, in declaration order.

    Args:
        model: a config class.
        prefix: put before every path (``"sampling.options."``).
        defaults: an instance whose values are the defaults shown (a section's default value,
            e.g. the quickstart's ``train``); None: the fields' own defaults.
    """
    keys = []
    for name, field in model.model_fields.items():
        path = prefix + name
        if defaults is not None:
            value: Any = getattr(defaults, name)
        elif field.is_required():
            value = _REQUIRED
        else:
            value = field.get_default(call_default_factory=True)
        section = _section_model(field.annotation)
        shown = "" if isinstance(value, BaseModel) else "required" if value is _REQUIRED else _yaml_value(value)
        keys.append(ConfigKey(path, _type_name(field.annotation), shown, field.description or ""))
        if section is not None:
            keys += config_keys(section, path + ".", value if isinstance(value, BaseModel) else None)
    return keys


def format_config_keys(keys: list[ConfigKey]) -> str:
    """One line per key: ``path: type = default  # description`` with the descriptions aligned."""
    heads = [f"{k.path}: {k.type}" + (f" = {k.default}" if k.default else "") for k in keys]
    width = min(max(map(len, heads), default=0), 64)
    return "\n".join(f"{head:{width}s}  # {k.description}" for head, k in zip(heads, keys))


_REQUIRED = object()


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The config class of a section field (``X`` or ``X | None``), else None."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _type_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return "|".join(str(a) for a in args)
    if origin is Annotated:
        return _type_name(args[0])
    if origin in (Union, UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list[{_type_name(args[0])}]"
    if origin is dict or annotation is dict:
        return "mapping"
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def _yaml_value(value: Any) -> str:
    """``value`` in YAML flow style on one line (``null``, ``true``, ``{name: selm, beta: 0.1}``)."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6)
    return text.strip().removesuffix("\n...").strip()
