"""Load a user's Python callable from an explicit reference string, and call it safely.

Two forms, nothing else (no ``eval``, no pickles):

- ``package.module:name`` — imported with ``importlib.import_module``;
- ``path/to/file.py:name`` — the file is executed as a fresh module.

``name`` may be dotted (``module:Class.method``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from selm.errors import ConfigError, JudgeError
from selm.judges.base import ItemFailure


def load_callable(reference: str, what: str = "callable") -> Callable[..., Any]:
    """Resolve ``module:name`` or ``file.py:name`` to a callable.

    Args:
        reference: the reference string.
        what: how to call it in error messages (e.g. ``judge 'function': callable``).

    Raises:
        ConfigError: malformed reference, module or file not found, import failure, missing
            attribute, or an attribute that is not callable.
    """
    module_part, sep, attr_path = reference.rpartition(":")
    dotted = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
    if (not sep or not module_part or not dotted.fullmatch(attr_path.strip())
            or not (module_part.endswith(".py") or dotted.fullmatch(module_part.strip()))):
        raise ConfigError(f"{what} '{reference}' must look like 'package.module:function' or 'path/file.py:function'")
    module = _load_module(module_part, reference, what)
    target: Any = module
    for attr in attr_path.split("."):
        if not hasattr(target, attr):
            raise ConfigError(f"{what} '{reference}': '{module_part}' has no attribute '{attr_path}'")
        target = getattr(target, attr)
    if not callable(target):
        raise ConfigError(f"{what} '{reference}': '{attr_path}' is a {type(target).__name__}, not a callable")
    return target


def _load_module(module_part: str, reference: str, what: str) -> ModuleType:
    if module_part.endswith(".py") or "/" in module_part or "\\" in module_part:
        return _load_file(Path(module_part).expanduser(), reference, what)
    try:
        return importlib.import_module(module_part)
    except Exception as exc:  # ImportError, or the module itself failed while importing
        raise ConfigError(f"{what} '{reference}': cannot import '{module_part}': {type(exc).__name__}: {exc}") from None


def _load_file(path: Path, reference: str, what: str) -> ModuleType:
    if not path.is_file():
        raise ConfigError(f"{what} '{reference}': no such file '{path}'")
    # A name unique per file, so two files with the same stem do not replace each other.
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"_selm_user_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{what} '{reference}': cannot load '{path}' as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's file failed at import: report it as a config problem
        del sys.modules[name]
        raise ConfigError(f"{what} '{reference}': importing '{path}' failed: {type(exc).__name__}: {exc}") from None
    return module


def call_per_item(fn: Callable[..., Any], rows: list[tuple[Any, ...]]) -> list[Any]:
    """``[fn(*row) for row in rows]``; an exception at row i becomes ``ItemFailure(i, ...)``."""
    out = []
    for index, row in enumerate(rows):
        try:
            out.append(fn(*row))
        except Exception as exc:  # the user's code failed on this item: say which one
            raise ItemFailure(index, f"the callable raised {type(exc).__name__}: {exc}") from exc
    return out


def call_batched(judge: str, fn: Callable[..., Any], *columns: list[Any]) -> Any:
    """``fn(*columns)``; an exception becomes a ``JudgeError`` naming the judge."""
    try:
        return fn(*columns)
    except Exception as exc:  # the user's code failed on the batch: no single item to name
        raise JudgeError(f"judge {judge}: the callable raised {type(exc).__name__} on the batch: {exc}") from exc
