"""Reading a verdict (A or B) or a 1–10 rating out of an LLM judge's free-text answer.

Judges rarely answer with the bare letter they were asked for. What is accepted, in this order
of precedence (the first family that matches decides; within it the **last** match wins, as the
MT-Bench and AlpacaEval judges read their models' answers: a model that restates the format
before concluding, or corrects itself, is read at its conclusion):

1. explicit markers: ``[[A]]`` (MT-Bench), ``[[7]]``;
2. conclusions: ``Answer: A``, ``Final verdict: **B**``, ``The better response is A``,
   ``Output (a)`` (AlpacaEval), ``Rating: 7/10``, ``I would rate it 7``, ``8 out of 10``;
3. a leading answer followed by nothing, punctuation or a new line: ``A``, ``**B**``,
   ``Response A.``, ``A\\n\\nExplanation: ...``, ``7``, ``7/10 - clear and correct``;
4. pairwise only: a comparison ``Response A is better ...``, ``B is clearly better``.

Reasoning blocks (``<think>…</think>`` and its ``thinking`` / ``reasoning`` spellings) are
removed first; an answer whose reasoning was cut before its closing tag has no verdict. A lone
closing tag (the opening one was in the chat template, as with DeepSeek-R1) ends the reasoning.

Letters must be capitals unless bracketed (``(a)``) or the whole answer (``b``), so the article in "a good answer" is never
read as a verdict; "A or B" and "7 or 8" are not answers.

A user's ``answer_regex`` replaces these rules: its first group, at its last match, is the answer.
"""

from __future__ import annotations

import re

MIN_RATING, MAX_RATING = 1.0, 10.0

_REASONING_TAGS = r"think|thinking|reasoning"
_REASONING_BLOCK = re.compile(rf"<({_REASONING_TAGS})>.*?</\1>", re.S | re.I)
_REASONING_CLOSE = re.compile(rf"</(?:{_REASONING_TAGS})>", re.I)
_REASONING_OPEN = re.compile(rf"<(?:{_REASONING_TAGS})>", re.I)

# A letter: a capital, or any case inside brackets; never followed by a word character, nor by
# "or B" (an undecided answer).
_LETTER = r"(?P<v>\([ABab]\)|\[[ABab]\]|[AB])(?!\w)(?!\s*(?:or|and|/)\s*[(\[]?[ABab]\b)"
# Markdown and quotes around a verdict. Never two of these runs side by side: a long run of spaces
# would make the regex quadratic.
_MARKUP = r"[\s*_\"'`]*"
_SLOT = r"(?i:(?:response|output|assistant|answer)\s*)?"
_VERDICT_FAMILIES = (
    (re.compile(r"\[\[\s*(?P<v>[ABab])\s*\]\]"),),
    (re.compile(
        r"(?i:\b(?:(?:final\s+)?(?:answer|verdict|choice|decision|judg(?:e)?ment|winner)"
        r"|(?:the\s+)?(?:better|best|preferred|winning)\s+(?:response|answer|output|one)"
        r"|output))"
        rf"{_MARKUP}(?:(?i:is|:|=|-){_MARKUP})?{_SLOT}{_LETTER}"
    ),),
    (re.compile(rf"^[\s*_#>\"'`]*{_SLOT}{_LETTER}(?=[\s*_\"'`]*(?:$|\n|[^\w\s]))"),
     re.compile(rf"^\W*{_SLOT}(?P<v>[ABab])\W*$")),
    (re.compile(rf"(?<!\w){_SLOT}{_LETTER}{_MARKUP}(?i:is\s+(?:\w+ly\s+)?(?:better|superior|preferred)|wins)\b"),),
)

_NUMBER = r"(?P<v>\d+(?:\.\d+)?)"
_OUT_OF_TEN = r"(?:\s*/\s*10|\s+out\s+of\s+10)"
_UNDECIDED = r"(?!\d|\.\d|\s*(?:or|-|to|and)\s*\d)"
_RATING_FAMILIES = (
    (re.compile(rf"\[\[\s*{_NUMBER}\s*(?:/\s*10\s*)?\]\]"),),
    (re.compile(rf"(?i:\b(?:rating|score|grade)){_MARKUP}(?:(?i:is|of|:|=|-){_MARKUP})?{_NUMBER}{_UNDECIDED}"),
     re.compile(rf"(?i:\brate\s+(?:(?:it|this|this\s+response|the\s+response)\s+)?(?:(?:a|as|at)\s+)?){_NUMBER}{_UNDECIDED}"),
     re.compile(rf"(?<![\w.]){_NUMBER}{_OUT_OF_TEN}\b")),
    (re.compile(rf"^[\s*_#>\"'`]*{_NUMBER}{_OUT_OF_TEN}?(?=[\s*_\"'`]*(?:$|\n|[^\w\s.]|\.(?!\d)))"),),
)


def strip_reasoning(text: str) -> str:
    """``text`` without its reasoning blocks (see the module docstring); what remains is the answer."""
    text = _REASONING_BLOCK.sub(" ", text)
    closes = list(_REASONING_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end():]
    opened = _REASONING_OPEN.search(text)
    return text[:opened.start()] if opened else text


def _last(families: tuple[tuple[re.Pattern[str], ...], ...], text: str) -> str | None:
    """The group ``v`` of the last match (by position) of the first family that matches ``text``, or None."""
    for family in families:
        matches = [m for pattern in family for m in pattern.finditer(text)]
        if matches:
            return max(matches, key=lambda m: m.start()).group("v")
    return None


def _user_match(pattern: re.Pattern[str], text: str) -> str | None:
    matches = list(pattern.finditer(text))
    return matches[-1].group(1) if matches else None


def parse_verdict(text: str, pattern: re.Pattern[str] | None = None) -> float:
    """1.0 if the answer picks A, 0.0 if it picks B (``pattern``: a user's regex, group 1 the letter).

    Raises:
        ValueError: the answer picks neither (the message quotes its start).
    """
    answer = strip_reasoning(text)
    found = _user_match(pattern, answer) if pattern is not None else _last(_VERDICT_FAMILIES, answer)
    letter = (found or "").strip("()[] ").upper()
    if letter not in ("A", "B"):
        raise ValueError(f"no verdict (A or B) in the answer {_quote(text)}")
    return 1.0 if letter == "A" else 0.0


def parse_rating(text: str, pattern: re.Pattern[str] | None = None) -> float:
    """The 1–10 rating in the answer (``pattern``: a user's regex, group 1 the number).

    Raises:
        ValueError: there is no rating, or it is outside 1–10.
    """
    answer = strip_reasoning(text)
    found = _user_match(pattern, answer) if pattern is not None else _last(_RATING_FAMILIES, answer)
    try:
        rating = float(found) if found is not None else None
    except ValueError:
        rating = None
    if rating is None:
        raise ValueError(f"no rating (1-10) in the answer {_quote(text)}")
    if not MIN_RATING <= rating <= MAX_RATING:
        raise ValueError(f"rating {rating:g} is outside {MIN_RATING:g}-{MAX_RATING:g}")
    return rating


def _quote(text: str, limit: int = 80) -> str:
    """The start of an answer, for a message (long reasoning is cut)."""
    return repr(text[:limit] + ("..." if len(text) > limit else ""))
