"""One request to an OpenAI-compatible ``POST {base_url}/chat/completions``, and what its failure means.

Standard library only (``urllib``). ``post_chat`` returns the answer or raises one of:

- ``Retryable``: a timeout, a refused or broken connection, HTTP 408 / 429 / 5xx (with the
  server's ``Retry-After``), or a 200 whose body is not a chat completion;
- ``ContextOverflow``: HTTP 400 / 413 saying the prompt does not fit the model's context, with
  the fraction of the input that would fit when the message gives the numbers (vLLM and OpenAI do);
- ``Fatal``: any other HTTP error (bad key, unknown model, a parameter the model refuses).

Two parameter styles (``chat_body``): ``max_tokens`` with ``temperature`` (most servers, vLLM),
or ``max_completion_tokens`` and no temperature (OpenAI's reasoning models, which refuse both
``max_tokens`` and any temperature but their own).
"""

from __future__ import annotations

import http.client
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Literal

ParameterStyle = Literal["max_tokens", "max_completion_tokens"]

_RETRY_STATUSES = frozenset({408, 429})
_OVERFLOW = re.compile(r"context length|context_length_exceeded|context window|maximum model length|"
                       r"prompt is too long|input is too long|too many (?:input )?tokens", re.I)
_LIMIT = re.compile(r"maximum context length is (\d+)", re.I)
_INPUT = re.compile(r"(\d+) (?:tokens )?in the messages|has (\d+) input tokens|resulted in (\d+) tokens", re.I)


@dataclass(frozen=True)
class ChatReply:
    """The first choice of a chat completion: its text, and why generation stopped (``length``: cut)."""

    content: str
    finish_reason: str | None


class Retryable(Exception):
    """A transient failure; ``retry_after`` is the server's hint in seconds, if it gave one;
    ``status`` the HTTP status when the server answered (None: no connection, or not a chat completion)."""

    def __init__(self, reason: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.status = status


class Fatal(Exception):
    """A failure that resending the same request cannot fix; ``status`` is the HTTP status, if any."""

    def __init__(self, reason: str, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status


class ContextOverflow(Fatal):
    """The prompt is longer than the model's context; ``fits`` is the fraction of its input tokens
    that would fit beside the answer's budget (None: the server did not say)."""

    def __init__(self, reason: str, fits: float | None):
        super().__init__(reason, 400)
        self.fits = fits


def chat_body(model: str, messages: list[dict[str, str]], *, style: ParameterStyle, max_tokens: int,
              temperature: float, seed: int | None) -> dict[str, Any]:
    """The JSON body of one chat-completions request in the given parameter ``style``.

    ``temperature`` is sent in the ``max_tokens`` style only; ``seed`` (None: not sent) makes a
    sampled answer reproducible on servers that honour it (OpenAI, vLLM).
    """
    body: dict[str, Any] = {"model": model, "messages": messages, "n": 1, style: max_tokens}
    if style == "max_tokens":
        body["temperature"] = temperature
    if seed is not None:
        body["seed"] = seed
    return body


def post_chat(url: str, body: dict[str, Any], headers: dict[str, str], timeout_s: float,
              budget: int) -> ChatReply:
    """Send ``body`` to ``url``; ``budget`` is the answer's token budget (to size a context overflow).

    Raises:
        Retryable, ContextOverflow, Fatal: see the module docstring.
    """
    request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        text = _error_body(exc)
        detail = f"HTTP {exc.code}: {excerpt(text)}"
        if exc.code in _RETRY_STATUSES or exc.code >= 500:
            raise Retryable(detail, _retry_after(exc.headers.get("Retry-After")), exc.code) from None
        message = text.decode("utf-8", errors="replace")
        if exc.code in (400, 413) and _OVERFLOW.search(message):
            raise ContextOverflow(detail, _fits(message, budget)) from None
        raise Fatal(detail, exc.code) from None
    except urllib.error.URLError as exc:
        raise Retryable(f"connection failed: {exc.reason}") from None
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        raise Retryable(f"{type(exc).__name__}: {str(exc) or 'timed out'}") from None
    try:
        choice = json.loads(raw)["choices"][0]
        content, finish_reason = choice["message"]["content"], choice.get("finish_reason")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise Retryable(f"malformed response body: {excerpt(raw)}") from None
    if not isinstance(content, str):
        raise Retryable(f"malformed response body: no message content in {excerpt(raw)}")
    return ChatReply(content, finish_reason)


def excerpt(raw: bytes, limit: int = 200) -> str:
    """The start of a response body on one line, for a message."""
    text = raw.decode("utf-8", errors="replace").strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


def _fits(message: str, budget: int) -> float | None:
    """(context − answer budget) / input tokens, from an overflow message that gives both numbers."""
    limit, used = _LIMIT.search(message), _INPUT.search(message)
    if limit is None or used is None:
        return None
    tokens = int(next(group for group in used.groups() if group is not None))
    return max(0.0, (int(limit.group(1)) - budget) / max(tokens, 1))


def _error_body(exc: urllib.error.HTTPError) -> bytes:
    """The body of an error response, or nothing if the connection broke while reading it."""
    try:
        return exc.read()
    except (OSError, http.client.HTTPException):
        return b""


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (the delta-seconds form; dates are ignored)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
