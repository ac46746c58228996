"""Timing the phases of a loop from outside: wrap some of its methods and log every call.

Neither selm's round loop nor TRL's trainers need a change to be split into phases: the bench
wraps the methods that do one phase (TRL's ``_generate``, its reward call, its log-prob passes;
selm's ``phase_sample``, ...) for the duration of a measurement and reads the log afterwards.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Call:
    """One call of a wrapped method: ``perf_counter`` seconds at start and end, whether autograd was
    recording (a no-grad log-prob pass is a reference or old-policy pass), and what ``keep`` took from it."""

    name: str
    start: float
    end: float
    grad: bool
    kept: Any = None

    @property
    def seconds(self) -> float:
        return self.end - self.start


class CallLog:
    """Every call of the methods wrapped by :meth:`wrapping`, in the order they started."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    @contextmanager
    def wrapping(self, owner: Any, names: list[str],
                 keep: dict[str, Callable[[tuple, Any], Any]] | None = None) -> Iterator["CallLog"]:
        """Log the calls of ``owner``'s methods ``names`` while inside; restore them on exit.

        Args:
            owner: a class (every instance's calls are logged), one object, or a module (its functions).
            names: method names.
            keep: per name, ``keep(args, result)`` is stored in :attr:`Call.kept` (``args`` after ``self``
                for a class).
        """
        keep = keep or {}
        originals = {name: vars(owner).get(name) for name in names}
        for name in names:
            setattr(owner, name, self._wrapped(name, getattr(owner, name), isinstance(owner, type), keep.get(name)))
        try:
            yield self
        finally:
            for name, original in originals.items():
                if original is not None:
                    setattr(owner, name, original)
                else:  # an inherited method or one bound from the class: drop the wrapper that shadows it
                    delattr(owner, name)

    def _wrapped(self, name: str, method: Callable, unbound: bool, keep: Callable | None) -> Callable:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            entry = Call(name, time.perf_counter(), 0.0, torch.is_grad_enabled())
            self.calls.append(entry)
            try:
                result = method(*args, **kwargs)
            finally:
                entry.end = time.perf_counter()
            if keep is not None:
                entry.kept = keep(args[1:] if unbound else args, result)
            return result

        return call

    def between(self, start: float, end: float, name: str | None = None) -> list[Call]:
        """The calls (of ``name``, or all) that started at or after ``start`` and ended by ``end``."""
        return [c for c in self.calls if start <= c.start and c.end <= end and (name is None or c.name == name)]

    def seconds(self, start: float, end: float, name: str, grad: bool | None = None) -> float:
        """Total seconds of ``name``'s calls within [start, end] (only those with that ``grad`` when given)."""
        return sum(c.seconds for c in self.between(start, end, name) if grad is None or c.grad == grad)
