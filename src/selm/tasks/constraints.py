"""Verifiable instruction constraints (in the spirit of IFEval, Zhou et al. 2023, arXiv 2311.07911).

Each constraint renders one instruction sentence and checks a response with a rule, no model:

| kind | instruction | passes when |
|---|---|---|
| ``max_words`` | Answer in at most N words. | #words ≤ N (words = whitespace-separated items) |
| ``min_words`` | Use at least N words. | #words ≥ N |
| ``sentences`` | Write exactly N sentences. | #sentences = N (text split after . ! ?) |
| ``include`` | Include the word "W". | W occurs as a whole word (any case) |
| ``forbid`` | Do not use the word "W". | W never occurs as a whole word (any case) |
| ``bullets`` | Answer with exactly N bullet points starting with "- ". | exactly N non-empty lines, all starting "- " |
| ``json`` | Answer in JSON with the keys "a" and "b". | the whole response parses as a JSON object with exactly those keys |
| ``lowercase`` | Use only lowercase letters. | has a letter and no uppercase letter |
| ``uppercase`` | Write in capital letters only. | has a letter and no lowercase letter |
| ``ending`` | End your answer with the phrase "P". | the stripped response ends with P (any case) |
| ``no_commas`` | Do not use any commas. | no "," |

Every check fails an empty (whitespace-only) response: saying nothing obeys no instruction.
Constraints are drawn in compatible sets: at most one per group, and never a pair in
``INCOMPATIBLE`` (e.g. JSON keys cannot be all capitals).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

WORD_RE = re.compile(r"[A-Za-z0-9']+")
_SENTENCE_END_RE = re.compile(r"[.!?]+(?=\s|$)")

GROUPS = {"max_words": "length", "min_words": "length", "sentences": "length", "include": "include",
          "forbid": "forbid", "bullets": "format", "json": "format", "lowercase": "case", "uppercase": "case",
          "ending": "ending", "no_commas": "commas"}
INCOMPATIBLE = {frozenset(pair) for pair in [
    ("json", "lowercase"), ("json", "uppercase"), ("json", "ending"), ("json", "sentences"), ("json", "min_words"),
    ("bullets", "sentences"), ("bullets", "ending"), ("sentences", "ending"), ("json", "no_commas"),
    ("bullets", "max_words"), ("bullets", "min_words"), ("json", "max_words"),
]}


def count_words(text: str) -> int:
    """Whitespace-separated items that contain a letter or digit (a lone "-" bullet is no word)."""
    return sum(1 for item in text.split() if WORD_RE.search(item))


def count_sentences(text: str) -> int:
    """Sentences: pieces ended by . ! ? (followed by space or the end) plus a trailing unended piece."""
    pieces = _SENTENCE_END_RE.split(text.strip())
    return sum(1 for piece in pieces if WORD_RE.search(piece))


def has_word(text: str, word: str) -> bool:
    """Whether ``word`` occurs in ``text`` as a whole word, ignoring case."""
    return re.search(rf"(?<![A-Za-z0-9']){re.escape(word)}(?![A-Za-z0-9'])", text, re.IGNORECASE) is not None


@dataclass(frozen=True)
class Constraint:
    """One checkable instruction: ``kind`` (a key of ``GROUPS``) and its argument.

    ``value`` is the number (``max_words``, ``min_words``, ``sentences``, ``bullets``), the word
    (``include``, ``forbid``), the phrase (``ending``), the comma-joined keys (``json``), or ""
    (``lowercase``, ``uppercase``, ``no_commas``).
    """

    kind: str
    value: str = ""

    def __post_init__(self) -> None:
        if self.kind not in GROUPS:
            raise ValueError(f"unknown constraint kind '{self.kind}'; known: {', '.join(sorted(GROUPS))}")

    @property
    def keys(self) -> list[str]:
        """The required keys of a ``json`` constraint."""
        return self.value.split(",")

    def instruction(self) -> str:
        """The sentence that asks for this constraint in a prompt."""
        v = self.value
        text = {
            "max_words": f"Answer in at most {v} words.",
            "min_words": f"Use at least {v} words.",
            "sentences": f"Write exactly {v} sentence{'s' if v != '1' else ''}.",
            "include": f'Include the word "{v}".',
            "forbid": f'Do not use the word "{v}".',
            "bullets": f'Answer with exactly {v} bullet points starting with "- ".',
            "json": "Answer in JSON with the keys " + " and ".join(f'"{k}"' for k in self.keys) + ".",
            "lowercase": "Use only lowercase letters.",
            "uppercase": "Write in capital letters only.",
            "ending": f'End your answer with the phrase "{v}".',
            "no_commas": "Do not use any commas.",
        }
        return text[self.kind]

    def check(self, response: str) -> bool:
        """Whether ``response`` (the text after the prompt) meets this constraint."""
        text = response.strip()
        if not text:
            return False
        kind, v = self.kind, self.value
        if kind == "max_words":
            return count_words(text) <= int(v)
        if kind == "min_words":
            return count_words(text) >= int(v)
        if kind == "sentences":
            return count_sentences(text) == int(v)
        if kind == "include":
            return has_word(text, v)
        if kind == "forbid":
            return not has_word(text, v)
        if kind == "bullets":
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            return len(lines) == int(v) and all(line.startswith("- ") and WORD_RE.search(line) for line in lines)
        if kind == "json":
            try:
                value = json.loads(text)
            except ValueError:
                return False
            return isinstance(value, dict) and sorted(value) == sorted(self.keys)
        if kind == "lowercase":
            return any(c.isalpha() for c in text) and not any(c.isupper() for c in text)
        if kind == "uppercase":
            return any(c.isalpha() for c in text) and not any(c.islower() for c in text)
        if kind == "ending":
            return text.lower().endswith(v.lower())
        return "," not in text  # no_commas


_PATTERNS = {
    "max_words": r"Answer in at most (\d+) words\.",
    "min_words": r"Use at least (\d+) words\.",
    "sentences": r"Write exactly (\d+) sentences?\.",
    "include": r'Include the word "([^"]+)"\.',
    "forbid": r'Do not use the word "([^"]+)"\.',
    "bullets": r'Answer with exactly (\d+) bullet points starting with "- "\.',
    "json": r'Answer in JSON with the keys ("[^"]+"(?: and "[^"]+")*)\.',
    "lowercase": r"Use only lowercase letters\.()",
    "uppercase": r"Write in capital letters only\.()",
    "ending": r'End your answer with the phrase "([^"]+)"\.',
    "no_commas": r"Do not use any commas\.()",
}
_COMPILED = {kind: re.compile(pattern) for kind, pattern in _PATTERNS.items()}


def parse_instructions(text: str) -> list[Constraint]:
    """The constraints whose instructions make up ``text`` (space-separated), in order.

    The inverse of ``" ".join(c.instruction() for c in constraints)``.

    Raises:
        ValueError: ``text`` is not a sequence of constraint instructions.
    """
    constraints: list[Constraint] = []
    pos = 0
    while pos < len(text):
        for kind, pattern in _COMPILED.items():
            match = pattern.match(text, pos)
            if match:
                value = match.group(1)
                if kind == "json":
                    value = ",".join(re.findall(r'"([^"]+)"', value))
                constraints.append(Constraint(kind, value))
                pos = match.end()
                while pos < len(text) and text[pos] == " ":
                    pos += 1
                break
        else:
            raise ValueError(f"not a constraint instruction at: {text[pos:pos + 40]!r}")
    return constraints


def compatible(constraints: list[Constraint]) -> bool:
    """At most one constraint per group and no incompatible pair."""
    kinds = [c.kind for c in constraints]
    if len({GROUPS[k] for k in kinds}) != len(kinds):
        return False
    return not any(frozenset((a, b)) in INCOMPATIBLE for i, a in enumerate(kinds) for b in kinds[i + 1:])


def satisfaction(constraints: list[Constraint], response: str) -> float:
    """Fraction of ``constraints`` that ``response`` meets, in [0, 1]."""
    if not constraints:
        raise ValueError("no constraints to check")
    return sum(c.check(response) for c in constraints) / len(constraints)
