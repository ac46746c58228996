"""One registration idiom for selm's four extension points: objectives, judges, samplers, tasks.

Each extension point keeps one ``Registry`` of classes by name. A class names itself with a class
attribute (``name``; ``kind`` for judges) and registers with the extension point's class decorator;
a config value names it, and ``get`` turns the name into the class, or into one ``ConfigError``
line listing the available names. What a class is configured with is declared on the class: a
pydantic ``Options`` model (judges, samplers) or keyword arguments of ``__init__`` (objectives).

>>> animals = Registry("animal")
>>> @animals.register
... class Cat:
...     name = "cat"
>>> animals.get("cat") is Cat, animals.available()
(True, ['cat'])
>>> animals.get("dog")
Traceback (most recent call last):
selm.errors.ConfigError: unknown animal 'dog'; available: cat
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Generic, TypeVar

from selm.errors import ConfigError

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Classes of one extension point by name.

    Args:
        what: what a name names, for messages (``"objective"``, ``"kind"``, ``"backend"``, ``"task"``).
        key: the config key the name comes from, put before the message of ``get`` (``"judge"``,
            ``"sampling.backend"``); empty when the caller adds its own context.
        attribute: the class attribute ``register`` reads the name from.
    """

    def __init__(self, what: str, key: str = "", attribute: str = "name"):
        self.what = what
        self.key = key
        self.attribute = attribute
        self._classes: dict[str, T] = {}

    def register(self, cls: T) -> T:
        """Class decorator: register ``cls`` under its ``attribute``."""
        self.add(getattr(cls, self.attribute, ""), cls)
        return cls

    def add(self, name: str, cls: T) -> None:
        """Register ``cls`` under ``name`` (an alias when the class has another name too).

        Raises:
            ValueError: ``name`` is empty, or another class holds it (a programming error, not a
                user's: it happens at import time).
        """
        if not name:
            raise ValueError(f"{cls.__name__} has no {self.attribute}")
        if self._classes.get(name, cls) is not cls:
            raise ValueError(f"{self.what} '{name}' is registered twice")
        self._classes[name] = cls

    def available(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._classes)

    def unknown(self, name: object) -> str:
        """The message for a name that is not registered (without the config key)."""
        return f"unknown {self.what} '{name}'; available: {', '.join(self.available()) or 'none'}"

    def get(self, name: str) -> T:
        """The class registered under ``name``.

        Raises:
            ConfigError: no class is registered under ``name``; the message lists those that are.
        """
        if name not in self._classes:
            raise ConfigError((f"{self.key}: " if self.key else "") + self.unknown(name))
        return self._classes[name]

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    @contextlib.contextmanager
    def temporary_registrations(self) -> Iterator[None]:
        """Forget, on leaving the block, every class registered inside it (tests, notebooks)."""
        saved = dict(self._classes)
        try:
            yield
        finally:
            self._classes = saved
