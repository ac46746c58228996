"""``llm`` judge: LLM-as-a-judge over an OpenAI-compatible chat-completions HTTP API.

Works with any server that speaks ``POST {base_url}/chat/completions`` (OpenAI, vLLM, SGLang,
llama.cpp, TGI, ...). Only the standard library is used (``urllib``), no SDK. Spec::

    {kind: llm, base_url: "http://localhost:8000/v1", model: "Qwen/Qwen2.5-7B-Instruct",
     api_key_env: OPENAI_API_KEY, mode: pairwise, concurrency: 8}

Modes:

- ``pairwise`` (default): the model is shown the prompt and two responses and answers ``A`` or
  ``B``. With ``both_orders`` (default) every comparison is asked in both orders and averaged,
  so P(a ≻ b) ∈ {0, ½, 1} and a judge that always prefers the first slot gives ½, not a win.
- ``pointwise``: the model rates one response from 1 to 10; the rating is the score.

Secrets: ``api_key_env`` is the *name* of the environment variable that holds the key. The key
is read from the environment for each request and sent as ``Authorization: Bearer``; it is never
stored on the judge, in its config dump, its repr, its errors or its logs.

Failures: timeouts, connection errors, HTTP 408/429/5xx and answers without a parsable verdict
are retried with exponential backoff (``backoff_s``, doubling, at most ``max_backoff_s``; a
server's ``Retry-After`` is honoured within that cap), at most ``max_retries`` times per
request. Other HTTP errors (401, 404, ...) fail at once. When a request runs out of retries the
judge raises ``JudgeError`` naming the item, the order and the last failure. A verdict is never
made up.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import string
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, Literal, TypeVar

from pydantic import Field, field_validator, model_validator

from selm.config import StrictModel
from selm.errors import ConfigError
from selm.judges.base import ItemFailure, Judge
from selm.judges.registry import register_judge_kind

logger = logging.getLogger(__name__)

T = TypeVar("T")

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

_TEMPLATE_FIELDS = {
    "pairwise_template": {"prompt", "response_a", "response_b"},
    "pointwise_template": {"prompt", "response"},
}

# A bare verdict ("A", "**B**", "Response A.") or an explicit [[A]] marker anywhere.
_VERDICT_ONLY = re.compile(r"^\W*(?:response\s+)?([AB])\W*$", re.IGNORECASE)
_VERDICT_MARK = re.compile(r"\[\[\s*([AB])\s*\]\]", re.IGNORECASE)
# A bare rating ("7", "Rating: 7/10", "[[7]]") or an explicit [[7]] marker anywhere.
_NUMBER = r"(\d+(?:\.\d+)?)"
_RATING_ONLY = re.compile(
    rf"^\W*(?:(?:rating|score)\s*[:=]?\s*)?\[*\s*{_NUMBER}\s*\]*\s*(?:/\s*10)?\W*$", re.IGNORECASE
)
_RATING_MARK = re.compile(rf"\[\[\s*{_NUMBER}\s*\]\]")
MIN_RATING, MAX_RATING = 1.0, 10.0

# HTTP statuses worth retrying: request timeout, rate limit, and every server-side error.
_RETRY_STATUSES = frozenset({408, 429})


class _Retryable(Exception):
    """A transient failure; ``retry_after`` is the server's hint in seconds, if it gave one."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Cancelled(ItemFailure):
    """An item abandoned because another item of the same call failed."""


class _Fatal(Exception):
    """A failure that retrying cannot fix (bad key, unknown model, bad request)."""


def parse_verdict(text: str) -> float:
    """1.0 if the answer picks A, 0.0 if it picks B; raises ``ValueError`` if it picks neither or both."""
    match = _VERDICT_ONLY.match(text.strip())
    letters = {match.group(1).upper()} if match else {m.upper() for m in _VERDICT_MARK.findall(text)}
    if len(letters) != 1:
        raise ValueError(f"no verdict (A or B) in the answer {text[:80]!r}")
    return 1.0 if letters.pop() == "A" else 0.0


def parse_rating(text: str) -> float:
    """The 1–10 rating in the answer; raises ``ValueError`` if there is none, several, or out of range."""
    match = _RATING_ONLY.match(text.strip())
    numbers = {match.group(1)} if match else set(_RATING_MARK.findall(text))
    if len(numbers) != 1:
        raise ValueError(f"no rating (1-10) in the answer {text[:80]!r}")
    rating = float(numbers.pop())
    if not MIN_RATING <= rating <= MAX_RATING:
        raise ValueError(f"rating {rating:g} is outside {MIN_RATING:g}-{MAX_RATING:g}")
    return rating


@register_judge_kind
class LLMJudge(Judge):
    """LLM-as-a-judge over an OpenAI-compatible ``/chat/completions`` endpoint."""

    kind = "llm"

    class Options(StrictModel):
        """Spec keys of the ``llm`` judge."""

        base_url: str
        model: str
        api_key_env: str | None = None
        mode: Literal["pairwise", "pointwise"] = "pairwise"
        both_orders: bool = True
        temperature: float = Field(0.0, ge=0)
        max_tokens: int | None = Field(None, gt=0)
        max_retries: int = Field(5, ge=0)
        timeout_s: float = Field(60.0, gt=0)
        backoff_s: float = Field(1.0, ge=0)
        max_backoff_s: float = Field(60.0, ge=0)
        concurrency: int = Field(4, gt=0)
        system_prompt: str = SYSTEM_PROMPT
        pairwise_template: str = PAIRWISE_TEMPLATE
        pointwise_template: str = POINTWISE_TEMPLATE

        @field_validator("base_url")
        @classmethod
        def _http_url(cls, value: str) -> str:
            if not value.startswith(("http://", "https://")):
                raise ValueError("must start with http:// or https://")
            return value.rstrip("/")

        @model_validator(mode="after")
        def _templates(self) -> LLMJudge.Options:
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

    @property
    def label(self) -> str:
        return self.options.model

    # ----- judging ---------------------------------------------------------------------------

    def _compare(self, prompts: list[str], responses_a: list[str], responses_b: list[str]) -> list[float]:
        template = self.options.pairwise_template
        texts = [template.format(prompt=p, response_a=a, response_b=b)
                 for p, a, b in zip(prompts, responses_a, responses_b)]
        return self._ask_all(texts, parse_verdict)

    def _score(self, prompts: list[str], responses: list[str]) -> list[float]:
        template = self.options.pointwise_template
        texts = [template.format(prompt=p, response=r) for p, r in zip(prompts, responses)]
        return self._ask_all(texts, parse_rating)

    def _ask_all(self, texts: list[str], parse: Callable[[str], T]) -> list[T]:
        """Ask every text concurrently; the first item that fails stops the others and is raised."""
        stop = threading.Event()
        with ThreadPoolExecutor(max_workers=min(self.options.concurrency, len(texts)),
                                thread_name_prefix="selm-llm-judge") as pool:
            futures = [pool.submit(self._ask, index, text, parse, stop) for index, text in enumerate(texts)]
            wait(futures, return_when=FIRST_EXCEPTION)
            # All done, or one failed: then workers waiting to retry return at once, queued ones never start.
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
        errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
        if errors:
            # Report the real failure with the lowest index, not an item cancelled because of it.
            raise next((e for e in errors if not isinstance(e, _Cancelled)), errors[0])
        return [f.result() for f in futures]

    def _ask(self, index: int, text: str, parse: Callable[[str], T], stop: threading.Event) -> T:
        """One verdict, retried within the budget; raises ``ItemFailure(index, ...)`` when it runs out."""
        try:
            return self._ask_with_retries(index, text, parse, stop)
        except ItemFailure:
            # Stop the other items before this worker picks up the next one.
            stop.set()
            raise

    def _ask_with_retries(self, index: int, text: str, parse: Callable[[str], T], stop: threading.Event) -> T:
        opts = self.options
        delay = opts.backoff_s
        last = ""
        for attempt in range(opts.max_retries + 1):
            if stop.is_set():
                raise _Cancelled(index, "cancelled because another item failed")
            try:
                answer = self._chat(text)
                try:
                    return parse(answer)
                except ValueError as exc:
                    raise _Retryable(f"malformed answer: {exc}") from None
            except _Fatal as exc:
                raise ItemFailure(index, f"{exc} (not retried)") from None
            except _Retryable as exc:
                last = exc.reason
                if attempt == opts.max_retries:
                    break
                pause = min(max(delay, exc.retry_after or 0.0), opts.max_backoff_s)
                logger.info("judge %s: item %d: %s; retry %d/%d in %.2fs",
                            self.name, index, last, attempt + 1, opts.max_retries, pause)
                stop.wait(pause)
                delay *= 2
        raise ItemFailure(index, f"gave up after {opts.max_retries + 1} attempts; last error: {last}")

    # ----- HTTP ------------------------------------------------------------------------------

    def _chat(self, text: str) -> str:
        """One chat-completions request; returns the answer text or raises _Retryable / _Fatal."""
        opts = self.options
        body: dict[str, Any] = {
            "model": opts.model,
            "messages": [{"role": "system", "content": opts.system_prompt}, {"role": "user", "content": text}],
            "temperature": opts.temperature,
            "n": 1,
        }
        if opts.max_tokens is not None:
            body["max_tokens"] = opts.max_tokens
        request = urllib.request.Request(self.url, data=json.dumps(body).encode("utf-8"),
                                         headers=self._headers(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=opts.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = f"HTTP {exc.code}: {_excerpt(_error_body(exc))}"
            if exc.code in _RETRY_STATUSES or exc.code >= 500:
                raise _Retryable(detail, _retry_after(exc.headers.get("Retry-After"))) from None
            raise _Fatal(detail) from None
        except urllib.error.URLError as exc:
            raise _Retryable(f"connection failed: {exc.reason}") from None
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            raise _Retryable(f"{type(exc).__name__}: {str(exc) or 'timed out'}") from None
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Retryable(f"malformed response body: {_excerpt(raw)}") from None
        if not isinstance(content, str):
            raise _Retryable(f"malformed response body: no message content in {_excerpt(raw)}")
        return content

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.options.api_key_env is not None:
            key = os.environ.get(self.options.api_key_env)
            if not key:
                raise _Fatal(f"the environment variable '{self.options.api_key_env}' is no longer set")
            headers["Authorization"] = f"Bearer {key}"
        return headers


def _error_body(exc: urllib.error.HTTPError) -> bytes:
    """The body of an error response, or nothing if the connection broke while reading it."""
    try:
        return exc.read()
    except (OSError, http.client.HTTPException):
        return b""


def _excerpt(raw: bytes, limit: int = 200) -> str:
    text = raw.decode("utf-8", errors="replace").strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (the delta-seconds form; dates are ignored)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
