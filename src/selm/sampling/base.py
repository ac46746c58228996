"""The sampling interface every generation backend implements.

A backend takes tokenized prompts and returns ``n`` completions per prompt, each with the summed
log-prob of its tokens under the policy at temperature 1 and without truncation: the quantity a
trainer computes, so the two can be compared (and so importance weights can be formed) whatever
temperature, top-p or top-k the samples were drawn with.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from selm.config import StrictModel
from selm.errors import ConfigError
from selm.sampling.linear_alignment import LinearAlignment


@dataclass(frozen=True)
class SamplingParams:
    """How to sample.

    Attributes:
        n: completions per prompt.
        temperature: softmax temperature; 0 means greedy decoding (then the n completions are
            identical).
        top_p: nucleus sampling mass in (0, 1]; 1 disables it.
        top_k: keep the k most likely tokens; 0 disables it.
        max_new_tokens: most tokens generated per completion (EOS included).
        seed: makes sampling reproducible; the same seed and inputs give the same completions.
        stop_token_ids: token ids that end a completion besides the tokenizer's EOS (the stop
            token is kept in the completion, like EOS).
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 64
    seed: int = 0
    stop_token_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        checks = {
            "n": self.n >= 1,
            "temperature": self.temperature >= 0.0,
            "top_p": 0.0 < self.top_p <= 1.0,
            "top_k": self.top_k >= 0,
            "max_new_tokens": self.max_new_tokens >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"sampling.{name}: invalid value {getattr(self, name)!r}")
        # Accept any iterable of ids (a list from YAML) but store a tuple, so params stay hashable.
        object.__setattr__(self, "stop_token_ids", tuple(int(t) for t in self.stop_token_ids))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class Completion:
    """One generated continuation of a prompt.

    Attributes:
        token_ids: generated token ids; ends with the EOS/stop token when one was reached, and
            never contains anything after it (no padding).
        text: ``token_ids`` decoded without special tokens.
        logprob: Σ log π(token | prefix) over ``token_ids`` (EOS included), in nats, under the
            policy at temperature 1 with no top-p/top-k truncation.
        num_tokens: ``len(token_ids)``.
        finished: True when EOS or a stop token ended the completion, False when it ran into
            ``max_new_tokens``.
        token_logprobs: log π(token | prefix) of each token of ``token_ids``, nats, as ``logprob``;
            None when the backend does not report them. A rollout objective's importance ratio
            is taken against these when the sampler ran the trainer's own weights.
    """

    token_ids: list[int]
    text: str
    logprob: float
    num_tokens: int
    finished: bool
    token_logprobs: list[float] | None = None


@dataclass
class SamplingProgress:
    """A progress bar over completions that shows the decode rate, shared by several ``generate`` calls.

    Attributes:
        bar: an open tqdm bar whose total counts completions (prompts × n).
        tokens: generated tokens so far.
        start: ``time.perf_counter()`` when the bar was opened.
    """

    bar: Any
    tokens: int = 0
    start: float = field(default_factory=time.perf_counter)

    def advance(self, completions: int, tokens: int) -> None:
        """Count ``completions`` more finished completions and ``tokens`` more generated tokens."""
        self.tokens += tokens
        rate = self.tokens / max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix(tok_s=f"{rate:.0f}", refresh=False)
        self.bar.update(completions)


@dataclass(frozen=True)
class SamplerContext:
    """What a caller knows about the policy beyond the model object, for backends that use it.

    Attributes:
        workdir: a folder the backend may keep files in from one sampler to the next (a run's
            ``cache/<backend>``); None: the backend uses a temporary one if it needs one.
        policy_path: a folder holding exactly the model's weights, saved by the caller (a HF model
            folder, or a PEFT adapter folder for a LoRA model), e.g. a round's ``policy/``; None
            when they are saved nowhere yet.
    """

    workdir: Path | None = None
    policy_path: Path | None = None


class Sampler(ABC):
    """A generation backend.

    Subclasses set ``name`` (the ``sampling.backend`` that selects them) and ``Options`` (a pydantic
    model of their own keys, given as ``sampling.options`` in a run config), are decorated with
    ``selm.sampling.register_sampler``, and take ``(model, tokenizer, batch_size=..., progress=...,
    options=..., context=...)`` in ``__init__``.

    Attributes:
        separate_engine: True when the backend computes log-probs with its own kernels rather than
            the policy model's forward; the round loop then measures their drift from the
            trainer's (``selm.sampling.drift``).
        supports_linear_alignment: the backend implements :meth:`generate_aligned`.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type[StrictModel]] = StrictModel
    separate_engine: ClassVar[bool] = False
    supports_linear_alignment: ClassVar[bool] = False

    @abstractmethod
    def generate(self, prompt_token_ids: list[list[int]], params: SamplingParams,
                 progress: SamplingProgress | None = None) -> list[list[Completion]]:
        """Sample ``params.n`` completions for each prompt.

        Args:
            prompt_token_ids: P prompts, each a list of token ids (any lengths, no padding).
            params: sampling parameters.
            progress: a caller's bar to advance (by P × n in all) instead of the backend's own.

        Returns:
            P lists of ``params.n`` completions, in prompt order.
        """

    def generate_aligned(self, prompt_token_ids: list[list[int]], principled_token_ids: list[list[int]],
                         params: SamplingParams, alignment: LinearAlignment,
                         progress: SamplingProgress | None = None) -> list[list[Completion]]:
        """Linear alignment (:mod:`selm.sampling.linear_alignment`): ``params.n`` completions per prompt,
        each token drawn from the contrast of the principled and the plain context.

        Args:
            prompt_token_ids: P prompts without the principle (what the completions answer).
            principled_token_ids: the same P prompts with the principle.
            params: sampling parameters (``top_p`` and ``top_k`` are the caller's to leave off: the
                nucleus is ``alignment.top_p`` of the principled distribution).
            alignment: r and the nucleus mass.
            progress: as in :meth:`generate`.

        Returns:
            P lists of ``params.n`` completions; log-probs under the plain prompts.

        Raises:
            ConfigError: the backend has no linear alignment (``supports_linear_alignment`` is False).
        """
        raise ConfigError(f"sampling.linear_alignment: backend '{self.name}' does not support it (use hf)")
