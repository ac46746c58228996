"""Field values of a data row: plain text or a conversation, and how each is checked.

A value is either *standard* (a non-empty string) or *conversational* (a non-empty list of
``{"role", "content"}`` messages, TRL's formats). Checks raise :class:`FieldError`, which names the
field; the loader adds the file and row, so the user sees one line such as
``prefs.jsonl: row 12: field 'chosen' is an empty string``.
"""

from __future__ import annotations

from typing import Any, Union

Message = dict[str, Any]
# A prompt or a response: plain text, or a list of chat messages.
Turns = Union[str, list[Message]]

ROLES = ("system", "developer", "user", "assistant", "tool")


class FieldError(Exception):
    """One field of one row is invalid; ``str()`` is ``"field '<name>' <problem>"``."""

    def __init__(self, field: str, problem: str):
        super().__init__(field, problem)
        self.field = field
        self.problem = problem

    def __str__(self) -> str:
        return f"field '{self.field}' {self.problem}"


def is_conversation(value: Turns) -> bool:
    """True for a list of messages, False for plain text."""
    return isinstance(value, list)


def kind_name(conversational: bool) -> str:
    """``"conversational"`` or ``"standard"``, as error messages call the two formats."""
    return "conversational" if conversational else "standard"


def check_turns(row: dict[str, Any], field: str) -> Turns:
    """The value of ``row[field]``, checked to be a non-empty string or a valid message list.

    A missing key and a null value (as Parquet and datasets write absent fields) are the same.
    """
    value = row.get(field)
    if value is None:
        raise FieldError(field, "is missing")
    if isinstance(value, str):
        if not value.strip():
            raise FieldError(field, "is an empty string")
        return value
    if isinstance(value, list):
        return check_messages(value, field)
    raise FieldError(field, f"must be a string or a list of messages, got {type(value).__name__}")


def check_messages(value: list[Any], field: str) -> list[Message]:
    """Check a list of ``{"role", "content"}`` messages (extra keys such as ``name`` are kept)."""
    if not value:
        raise FieldError(field, "is an empty list of messages")
    for i, message in enumerate(value):
        where = f"message {i}"
        if not isinstance(message, dict):
            raise FieldError(field, f"{where} must be an object with 'role' and 'content', got {type(message).__name__}")
        for key in ("role", "content"):
            if message.get(key) is None:
                raise FieldError(field, f"{where} has no '{key}'")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise FieldError(field, f"{where} has unknown role {role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise FieldError(field, f"{where} 'content' must be a string, got {type(content).__name__}")
    return value


def check_prompt(value: Turns, field: str) -> Turns:
    """A prompt conversation must stop before the assistant's turn, which the response fills."""
    if is_conversation(value) and value[-1]["role"] == "assistant":
        raise FieldError(field, "ends with an assistant message; a prompt must end before the assistant's turn")
    return value


def check_response(value: Turns, field: str) -> Turns:
    """A response conversation starts with the assistant and says something."""
    if is_conversation(value):
        if value[0]["role"] != "assistant":
            raise FieldError(field, f"must start with an assistant message, got role {value[0]['role']!r}")
        if not any(m["content"].strip() for m in value):
            raise FieldError(field, "has only empty message contents")
    return value


def common_prefix_length(a: list[Message], b: list[Message]) -> int:
    """Number of leading messages ``a`` and ``b`` share (compared by role and content only)."""
    n = 0
    for x, y in zip(a, b):
        if (x["role"], x["content"]) != (y["role"], y["content"]):
            break
        n += 1
    return n
