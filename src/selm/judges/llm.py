"""``llm`` judge: LLM-as-a-judge over an OpenAI-compatible chat-completions HTTP API.

Works with any server that speaks ``POST {base_url}/chat/completions`` (OpenAI, vLLM, SGLang,
llama.cpp, TGI, ...). Only the standard library is used (``selm.judges.openai_chat``). Spec::

    {kind: llm, base_url: "http://localhost:8000/v1", model: "Qwen/Qwen2.5-7B-Instruct",
     api_key_env: OPENAI_API_KEY, mode: pairwise, concurrency: 4}

Modes:

- ``pairwise`` (default): the model is shown the prompt and two responses and answers ``A`` or
  ``B``. With ``both_orders`` (default) every comparison is asked in both orders and averaged,
  so P(a ≻ b) ∈ {0, ½, 1} and a judge that always prefers the first slot gives ½, not a win.
- ``pointwise``: the model rates one response from 1 to 10; the rating is the score.

Answers: ``max_tokens`` is the answer's budget, by default 32 tokens (a verdict and a short
sentence; a chatty model would otherwise write until its context ends), or 4096 with
``parameter_style: max_completion_tokens`` (OpenAI's reasoning models, whose budget includes
their reasoning; they take no ``temperature``). The verdict or rating is read by
``selm.judges.answers`` (``[[A]]``, ``Answer: A``, ``A`` and an explanation, ``<think>…</think>A``,
...), or by ``answer_regex`` (its group 1). An answer without one is asked once more with a
stricter instruction appended (not resent as is: at temperature 0 it would come back the same),
then the item fails.

Failures: timeouts, connection errors, HTTP 408/429/5xx and bodies that are not a chat completion
are retried with exponential backoff (``backoff_s``, doubling, at most ``max_backoff_s``; a
server's ``Retry-After`` is honoured within that cap) for up to ``max_wait_s`` (default 300 s,
longer than a vLLM server takes to restart) after the request's first failure, and at most
``max_retries`` times when that is set. Every retry is a warning line
(``judge llm 'm': item 3: retrying 2 in 2.0s (...): connection failed: ...``). Other HTTP errors
(401, 404, ...) fail at once, with a hint at the likely cause. A prompt longer than the model's
context (an HTTP 400 saying so) is shortened, cutting the longest responses first, and sent again
(``on_overlong: truncate``), or fails its item (``fail``); ``max_input_chars`` cuts every prompt
to a size known to fit before it is sent. When an item fails, the judge raises ``JudgeError``
naming the item, the order and the last failure. A verdict is never made up.

Start-up check: ``check()`` sends one short request, so that a wrong ``model``, key, a
``base_url`` without ``/v1`` or a server that is down fail before any work, in one line
(``check_at_start: false`` skips it).

Resume: inside ``keeping_answers(path)`` every answer is kept on disk as it arrives
(``selm.judges.answer_log``) and a request already answered is not sent again. When sampling
(``temperature > 0``, or a reasoning model), each request carries a ``seed`` derived from
``seed`` and its own content, so its answer does not depend on when or in which order it is
asked: a resumed judge phase gives what an uninterrupted one gives (on servers honouring seeds).

Concurrency: ``concurrency`` requests in flight (default 4) per process; under N processes the
server sees up to N × ``concurrency``.

Secrets: ``api_key_env`` is the *name* of the environment variable that holds the key. The key
is read from the environment for each request and sent as ``Authorization: Bearer``; it is never
stored on the judge, in its config dump, its repr, its errors or its logs.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import string
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from selm.config import StrictModel
from selm.errors import ConfigError, JudgeError
from selm.judges.answer_log import AnswerLog
from selm.judges.answers import parse_rating, parse_verdict, strip_reasoning
from selm.judges.base import ItemFailure, Judge
from selm.judges.openai_chat import (
    ChatReply,
    ContextOverflow,
    Fatal,
    ParameterStyle,
    Retryable,
    chat_body,
    post_chat,
)
from selm.judges.registry import register_judge_kind

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = "You are an impartial, careful judge of the quality of AI assistant responses."

PAIRWISE_TEMPLATE = """\
Which response answers the user's prompt better? Judge helpfulness, correctness and clarity. \
Do not let the order of the responses or their length influence you.

[Prompt]
{prompt}

[Response A]
{response_a}

[Response B]
{response_b}

Reply with a single letter: A if Response A is better, B if Response B is better."""

POINTWISE_TEMPLATE = """\
Rate how well the response answers the user's prompt, from 1 (useless) to 10 (excellent). \
Judge helpfulness, correctness and clarity.

[Prompt]
{prompt}

[Response]
{response}

Reply with the rating only: a number from 1 to 10."""

# Appended to a prompt whose answer had no verdict, for the one re-ask.
PAIRWISE_STRICT = "\n\nYour answer must be exactly one character, A or B, with nothing before or after it."
POINTWISE_STRICT = "\n\nYour answer must be exactly one whole number from 1 to 10, with nothing before or after it."

_TEMPLATE_FIELDS = {
    "pairwise_template": {"prompt", "response_a", "response_b"},
    "pointwise_template": {"prompt", "response"},
}
# The answer's token budget when max_tokens is not set, per parameter style.
DEFAULT_MAX_TOKENS: dict[str, int] = {"max_tokens": 32, "max_completion_tokens": 4096}
# How many times an over-long prompt is shortened before its item fails.
_SHRINKS = 4
_TRUNCATED = " [...]"
# How much of each answer the answer log keeps.
_KEPT_CHARS = 500
_CHECK_PROMPT = "Reply with the single letter A."
_SKIP_CHECK = "(check_at_start: false skips this check)"


class _Cancelled(ItemFailure):
    """An item abandoned because another item of the same call failed."""


@register_judge_kind
class LLMJudge(Judge):
    """LLM-as-a-judge over an OpenAI-compatible ``/chat/completions`` endpoint."""

    kind = "llm"

    class Options(StrictModel):
        """Spec keys of the ``llm`` judge."""

        base_url: str = Field(description="the API root, e.g. http://127.0.0.1:8000/v1")
        model: str = Field(description="the model name the server knows")
        api_key_env: str | None = Field(None, description="name of the environment variable holding the key")
        mode: Literal["pairwise", "pointwise"] = "pairwise"
        both_orders: bool = True
        parameter_style: ParameterStyle = Field(
            "max_tokens", description="max_tokens + temperature, or max_completion_tokens and no temperature "
                                      "(OpenAI's reasoning models)")
        temperature: float = Field(0.0, ge=0, description="not sent with parameter_style max_completion_tokens")
        max_tokens: int | None = Field(None, gt=0, description="the answer's token budget; default 32, "
                                                               "or 4096 with parameter_style max_completion_tokens")
        seed: int | None = Field(0, description="base of the per-request seeds sent when sampling; null: none")
        answer_regex: str | None = Field(None, description="regex whose group 1 is the verdict (A/B) or rating; "
                                                           "its last match counts")
        max_wait_s: float = Field(300.0, ge=0, description="how long one request keeps retrying after its "
                                                           "first failure")
        max_retries: int | None = Field(None, ge=0, description="at most this many retries per request; "
                                                                "null: only max_wait_s bounds them")
        timeout_s: float = Field(60.0, gt=0)
        backoff_s: float = Field(1.0, ge=0)
        max_backoff_s: float = Field(60.0, ge=0)
        concurrency: int = Field(4, gt=0, description="requests in flight per process")
        check_at_start: bool = Field(True, description="send one short request when the run starts")
        max_input_chars: int | None = Field(None, gt=0, description="cut the longest texts so that each judge "
                                                                    "prompt has at most this many characters")
        on_overlong: Literal["truncate", "fail"] = Field(
            "truncate", description="a prompt longer than the model's context: shorten it, or fail its item")
        system_prompt: str = SYSTEM_PROMPT
        pairwise_template: str = PAIRWISE_TEMPLATE
        pointwise_template: str = POINTWISE_TEMPLATE

        @field_validator("base_url")
        @classmethod
        def _http_url(cls, value: str) -> str:
            if not value.startswith(("http://", "https://")):
                raise ValueError("must start with http:// or https://")
            return value.rstrip("/")

        @field_validator("answer_regex")
        @classmethod
        def _one_group(cls, value: str | None) -> str | None:
            if value is None:
                return None
            try:
                groups = re.compile(value).groups
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
            if groups < 1:
                raise ValueError("needs a group, (...), around the verdict or rating")
            return value

        @model_validator(mode="after")
        def _consistent(self) -> LLMJudge.Options:
            if self.parameter_style == "max_completion_tokens" and "temperature" in self.model_fields_set:
                raise ValueError("temperature: is not sent with parameter_style max_completion_tokens "
                                 "(reasoning models refuse it); remove it")
            for key, required in _TEMPLATE_FIELDS.items():
                try:
                    used = {name for _, name, _, _ in string.Formatter().parse(getattr(self, key)) if name is not None}
                except ValueError as exc:
                    raise ValueError(f"{key}: {exc}") from None
                if used != required:
                    raise ValueError(f"{key} must use exactly the fields {sorted(required)}, got {sorted(used)}")
            return self

    def __init__(self, options: Options):
        super().__init__(options)
        if options.api_key_env is not None and not os.environ.get(options.api_key_env):
            raise ConfigError(f"judge 'llm': api_key_env: the environment variable '{options.api_key_env}' "
                              f"is not set")
        self.is_pairwise = options.mode == "pairwise"
        self.both_orders = self.is_pairwise and options.both_orders
        self.url = f"{options.base_url}/chat/completions"
        self.max_tokens = options.max_tokens or DEFAULT_MAX_TOKENS[options.parameter_style]
        pattern = re.compile(options.answer_regex) if options.answer_regex is not None else None
        parse = parse_verdict if self.is_pairwise else parse_rating
        self._parse = functools.partial(parse, pattern=pattern)
        self._template = options.pairwise_template if self.is_pairwise else options.pointwise_template
        self._strict = PAIRWISE_STRICT if self.is_pairwise else POINTWISE_STRICT
        self._answers: AnswerLog | None = None

    @property
    def label(self) -> str:
        return self.options.model

    # ----- around the judging ----------------------------------------------------------------

    def check(self) -> None:
        """One short request with the run's parameters; a config the server refuses is one JudgeError."""
        if not self.options.check_at_start:
            return
        try:
            post_chat(self.url, self._body(_CHECK_PROMPT), self._headers(), self.options.timeout_s, self.max_tokens)
        except Retryable as exc:
            if exc.status is not None:  # the server is there and busy: the real requests retry
                logger.warning("judge %s: start-up check: %s; starting anyway", self.name, exc.reason)
                return
            raise JudgeError(f"judge {self.name}: start-up check failed: {exc.reason}; is a chat-completions "
                             f"server running at {self.options.base_url}? {_SKIP_CHECK}") from None
        except Fatal as exc:
            raise JudgeError(f"judge {self.name}: start-up check failed: {exc.reason}{self._hint(exc)} "
                             f"{_SKIP_CHECK}") from None

    @contextlib.contextmanager
    def keeping_answers(self, path: Path) -> Iterator[None]:
        """Keep every answer in ``path`` as it arrives; reuse those already there (see the module docstring)."""
        self._answers = AnswerLog(path)
        try:
            yield
        finally:
            answers, self._answers = self._answers, None
            answers.close()

    # ----- judging ---------------------------------------------------------------------------

    def _compare(self, prompts: list[str], responses_a: list[str], responses_b: list[str]) -> list[float]:
        return self._ask_all([{"prompt": p, "response_a": a, "response_b": b}
                              for p, a, b in zip(prompts, responses_a, responses_b)])

    def _score(self, prompts: list[str], responses: list[str]) -> list[float]:
        return self._ask_all([{"prompt": p, "response": r} for p, r in zip(prompts, responses)])

    def _ask_all(self, items: list[dict[str, str]]) -> list[float]:
        """Ask every item (the template's fields) concurrently; the first that fails stops the others and is raised."""
        stop = threading.Event()
        with ThreadPoolExecutor(max_workers=min(self.options.concurrency, len(items)),
                                thread_name_prefix="selm-llm-judge") as pool:
            futures = [pool.submit(self._ask, index, fields, stop) for index, fields in enumerate(items)]
            wait(futures, return_when=FIRST_EXCEPTION)
            # All done, or one failed: then workers waiting to retry return at once, queued ones never start.
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
        errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
        if errors:
            # Report the real failure with the lowest index, not an item cancelled because of it.
            raise next((e for e in errors if not isinstance(e, _Cancelled)), errors[0])
        return [f.result() for f in futures]

    def _ask(self, index: int, fields: dict[str, str], stop: threading.Event) -> float:
        """One item's value; raises ``ItemFailure(index, ...)`` when it cannot be had."""
        try:
            return self._value(index, fields, stop)
        except ItemFailure:
            # Stop the other items before this worker picks up the next one.
            stop.set()
            raise

    def _value(self, index: int, fields: dict[str, str], stop: threading.Event) -> float:
        """The item's value: kept from an earlier call, or asked, and asked once more with a
        stricter instruction if the answer has none."""
        budget = self._field_budget()
        key = _request_key(self._body(self._template.format(**_fit(fields, budget))))
        kept = self._answers.get(key) if self._answers is not None else None
        if kept is not None:
            return kept
        reply, budget = self._send_fitting(index, fields, budget, stop)
        try:
            value = self._parse(reply.content)
        except ValueError:
            reply, _ = self._send_fitting(index, fields, budget, stop, self._strict)
            try:
                value = self._parse(reply.content)
            except ValueError as exc:
                cut = (f"; the answer was cut at max_tokens={self.max_tokens} (raise it)"
                       if reply.finish_reason == "length" else "")
                raise ItemFailure(index, f"no usable answer, also when asked again with a stricter instruction: "
                                         f"{exc}{cut}") from None
        if self._answers is not None:
            # The answer without its reasoning, for a person to read: a reasoning model's would swell the file.
            self._answers.put(key, value, strip_reasoning(reply.content).strip()[:_KEPT_CHARS])
        return value

    def _field_budget(self) -> int | None:
        """How many characters the template's fields may take in all (None: no limit)."""
        if self.options.max_input_chars is None:
            return None
        overhead = len(self._template.format(**{name: "" for name in self._fields()}))
        return max(0, self.options.max_input_chars - overhead)

    def _fields(self) -> set[str]:
        return _TEMPLATE_FIELDS["pairwise_template" if self.is_pairwise else "pointwise_template"]

    def _send_fitting(self, index: int, fields: dict[str, str], budget: int | None, stop: threading.Event,
                      suffix: str = "") -> tuple[ChatReply, int | None]:
        """Send the item's prompt (``suffix`` appended), its fields cut to ``budget`` characters, shortening
        them further while the server says the prompt exceeds the model's context (``on_overlong:
        truncate``). Returns the reply and the budget that got it."""
        shrinks = 0
        while True:
            fitted = _fit(fields, budget)
            try:
                return self._send(index, self._template.format(**fitted) + suffix, stop), budget
            except ContextOverflow as exc:
                if self.options.on_overlong == "fail":
                    raise ItemFailure(index, f"{exc.reason} (not retried: the prompt is longer than the judge's "
                                             f"context; on_overlong: truncate or max_input_chars shortens it)") from None
                if shrinks == _SHRINKS:
                    raise ItemFailure(index, f"{exc.reason} (still too long after shortening the prompt "
                                             f"{_SHRINKS} times){self._hint(exc)}") from None
                shrinks += 1
                size = sum(len(value) for value in fitted.values())
                # A margin under the server's own ratio: characters per token vary along a text.
                budget = int(size * (0.5 if exc.fits is None else min(0.9 * exc.fits, 0.9)))
                logger.warning("judge %s: item %d: %s; shortening its prompt's texts to %d characters",
                               self.name, index, exc.reason, budget)

    def _send(self, index: int, text: str, stop: threading.Event) -> ChatReply:
        """One request, retried on transient failures within ``max_wait_s`` (and ``max_retries``)."""
        opts = self.options
        body = self._body(text)
        delay, attempt, first_failure = opts.backoff_s, 0, None
        while True:
            if stop.is_set():
                raise _Cancelled(index, "cancelled because another item failed")
            attempt += 1
            try:
                return post_chat(self.url, body, self._headers(), opts.timeout_s, self.max_tokens)
            except ContextOverflow:
                raise
            except Fatal as exc:
                raise ItemFailure(index, f"{exc.reason} (not retried){self._hint(exc)}") from None
            except Retryable as exc:
                now = time.monotonic()
                first_failure = now if first_failure is None else first_failure
                left = opts.max_wait_s - (now - first_failure)
                if left <= 0 or (opts.max_retries is not None and attempt > opts.max_retries):
                    raise ItemFailure(index, f"gave up after {attempt} attempts; last error: {exc.reason}") from None
                pause = min(max(delay, exc.retry_after or 0.0), opts.max_backoff_s, left)
                of = f"/{opts.max_retries}" if opts.max_retries is not None else ""
                logger.warning("judge %s: item %d: retrying %d%s in %.1fs (%.0fs of max_wait_s=%gs used): %s",
                               self.name, index, attempt, of, pause, now - first_failure, opts.max_wait_s,
                               exc.reason)
                stop.wait(pause)
                delay *= 2

    # ----- the request -----------------------------------------------------------------------

    def _body(self, text: str) -> dict[str, Any]:
        opts = self.options
        sampled = opts.parameter_style == "max_completion_tokens" or opts.temperature > 0
        seed = _request_seed(opts.seed, opts.system_prompt, text) if sampled and opts.seed is not None else None
        messages = [{"role": "system", "content": opts.system_prompt}, {"role": "user", "content": text}]
        return chat_body(opts.model, messages, style=opts.parameter_style, max_tokens=self.max_tokens,
                         temperature=opts.temperature, seed=seed)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.options.api_key_env is not None:
            key = os.environ.get(self.options.api_key_env)
            if not key:
                raise Fatal(f"the environment variable '{self.options.api_key_env}' is no longer set")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _hint(self, exc: Fatal) -> str:
        """The likely cause of a refused request, as a clause to append to its message."""
        opts = self.options
        if exc.status in (401, 403):
            return (f"; is the key in ${opts.api_key_env} right?" if opts.api_key_env
                    else "; the server wants a key: set api_key_env")
        if exc.status == 404:
            return (f"; does the server serve the model '{opts.model}', and is base_url its API root "
                    f"(e.g. http://host:8000/v1)?")
        if isinstance(exc, ContextOverflow) and exc.fits == 0:
            return f"; max_tokens={self.max_tokens} leaves no room for the prompt"
        if exc.status == 400:
            other = "max_completion_tokens" if opts.parameter_style == "max_tokens" else "max_tokens"
            if re.search(r"max_tokens|max_completion_tokens|temperature", exc.reason):
                return f"; does the model want parameter_style: {other}?"
        return ""


def _fit(fields: dict[str, str], budget: int | None) -> dict[str, str]:
    """``fields`` cut to ``budget`` characters in all, the longest first: every text longer than a
    common cap is cut to it (ending in `` [...]``), the shorter ones are kept whole."""
    if budget is None or sum(len(v) for v in fields.values()) <= budget:
        return fields
    lengths = sorted(len(v) for v in fields.values())
    cap, left = 0, budget
    for done, length in enumerate(lengths):
        share = left // (len(lengths) - done)
        if length > share:
            cap = share
            break
        left -= length
    return {name: value if len(value) <= cap else value[:max(0, cap - len(_TRUNCATED))] + _TRUNCATED
            for name, value in fields.items()}


def _request_seed(base: int, system: str, text: str) -> int:
    """A seed for one request, from ``base`` and the request's content only (not its order)."""
    digest = hashlib.sha256(f"{base}\0{system}\0{text}".encode()).hexdigest()
    return int(digest[:8], 16)


def _request_key(body: dict[str, Any]) -> str:
    """Identifies a request by everything it sends (model, messages, parameters, seed)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
