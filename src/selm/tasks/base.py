"""The ``Task`` interface: prompts, a programmatic gold reward, and a small starting model.

A task generates its prompts from seeded streams. The held-out (eval) prompts are a fixed pool
drawn from their own stream; train prompts come from a per-seed stream with every pool prompt
removed, so the two sets are disjoint for any seed and any sizes.
"""

from __future__ import annotations

import functools
import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from selm.errors import ConfigError, DataError
from selm.tasks.starting_model import StartingModelSettings, ensure_starting_model


class Task(ABC):
    """A built-in task. Subclasses set ``name``, ``version``, ``max_new_tokens``, ``stop_strings``
    and implement ``sample_prompt``, ``gold_reward``, ``reference_responses`` and
    ``demonstration``."""

    name: str
    version: int
    max_new_tokens: int
    stop_strings: tuple[str, ...]
    eval_pool_size: int = 1000
    starting_model_settings: StartingModelSettings = StartingModelSettings()

    @abstractmethod
    def sample_prompt(self, rng: random.Random) -> str:
        """One random prompt drawn with ``rng``."""

    @abstractmethod
    def gold_reward(self, prompts: list[str], responses: list[str]) -> list[float]:
        """Gold reward in [0, 1] of each response (text after the prompt, without EOS)."""

    @abstractmethod
    def reference_responses(self, prompts: list[str]) -> list[str]:
        """The ideal response to each prompt (reward 1.0); for tests and evaluation only."""

    @abstractmethod
    def demonstration(self, prompt: str, rng: random.Random) -> str:
        """A response in the right format but not aligned with the goal: what the starting
        ("SFT") model is trained to imitate."""

    def sample_eval_prompt(self, rng: random.Random) -> str:
        """One random held-out prompt; tasks whose held-out prompts come from a separate
        distribution (e.g. unseen topics) override this."""
        return self.sample_prompt(rng)

    def eval_prompts(self, n: int) -> list[str]:
        """The first ``n`` prompts of the fixed held-out pool (same on every call)."""
        if not 0 <= n <= self.eval_pool_size:
            raise ConfigError(f"task '{self.name}': eval prompts must be between 0 and {self.eval_pool_size}, got {n}")
        return self._eval_pool[:n]

    def train_prompts(self, n: int, seed: int) -> list[str]:
        """``n`` distinct training prompts from the stream of ``seed``; never a held-out prompt."""
        if n < 0:
            raise ConfigError(f"task '{self.name}': the number of train prompts must be >= 0, got {n}")
        held_out = set(self._eval_pool)
        return self._distinct_prompts(random.Random(f"{self.name}/train/{seed}"), n, exclude=held_out)

    def starting_model(self, cache_dir: str | Path | None = None,
                       settings: StartingModelSettings | None = None, progress: bool = True) -> Path:
        """Folder of the task's starting model and tokenizer (HF format), built on first use.

        Args:
            cache_dir: cache root; default ``$SELM_CACHE_DIR`` or ``~/.cache/selm``. The model lives
                in ``<root>/models/<task>-<hash of the build settings>``.
            settings: build settings; default ``self.starting_model_settings``.
            progress: show a progress bar while building.
        """
        return ensure_starting_model(self, settings or self.starting_model_settings, cache_dir, progress)

    @functools.cached_property
    def _eval_pool(self) -> list[str]:
        return self._distinct_prompts(random.Random(f"{self.name}/eval"), self.eval_pool_size, exclude=set(),
                                      sample=self.sample_eval_prompt)

    def _distinct_prompts(self, rng: random.Random, n: int, exclude: set[str],
                          sample: Callable[[random.Random], str] | None = None) -> list[str]:
        seen: set[str] = set()
        prompts: list[str] = []
        # The prompt space is far larger than any sensible request; the cap only turns an
        # impossible request into an error instead of an endless loop.
        for _ in range(100 * n + 1000):
            if len(prompts) == n:
                break
            prompt = (sample or self.sample_prompt)(rng)
            if prompt not in seen and prompt not in exclude:
                seen.add(prompt)
                prompts.append(prompt)
        if len(prompts) < n:
            raise ConfigError(f"task '{self.name}' cannot generate {n} distinct prompts")
        return prompts

    @staticmethod
    def _check_pairs(prompts: list[str], responses: list[str]) -> None:
        if len(prompts) != len(responses):
            raise DataError(f"{len(prompts)} prompts but {len(responses)} responses")
