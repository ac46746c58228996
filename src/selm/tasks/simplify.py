"""The ``simplify`` task: rewrite a hard sentence so that it is easier to read and means the same.

After the health-text-simplification setting of Rahman et al. 2024 (https://arxiv.org/abs/2401.15043),
with a programmatic reward instead of their learned original-vs-simplified classifier. Prompt
(plain text, a format a base model continues)::

    Simplify: The physician utilized the apparatus, and consequently the committee terminated the procedure.
    Simple:

The source sentences are generated here from the project's own word lists (two clauses of
subject, Latinate verb and object, joined by a connective), so they carry the project's license
(Apache-2.0); each hard phrase has a plain one (``LEXICON``). The ideal response splits the
sentence at the connective and uses the plain phrases:
``" The doctor used the tool. So the group ended the process."``

Gold reward in [0, 1] of a response y to a source x (``simplify_reward``):

    gain   = clip((FK(x) − FK(y)) / max(FK(x) − TARGET_GRADE, 1), 0, 1)   readability gain
    keep   = recall of x's content words in y (a word counts as kept when it, or its plain
             phrase from LEXICON, appears in y)                          meaning preservation
    reward = gain · keep · (1 if y ends a sentence, else 1/2)
    reward = 0 when y copies x (x's words and punctuation are a prefix of y's: an exact copy, or
             a copy with text appended, which games the words-per-sentence term), when
             keep < KEEP_FLOOR (meaning lost), or when y has fewer than MIN_LENGTH_RATIO of x's
             words (truncated)

FK is the Flesch–Kincaid grade (``selm.tasks.readability``). Full credit for readability is
reaching grade ``TARGET_GRADE`` (6, the level plain-language guidance asks of patient materials),
not a fixed number of grades: the generated sources sit at grade 15–30, so a fixed 4-grade scale
would saturate after two replaced words and stop telling partial simplifications from full ones.
A sentence split that keeps every word still gains a little (shorter sentences), so it beats a
copy; readability alone rewards truncation, which the keep term, its floor and the length floor
take away. Gold rewards are in [0, 1] like every task's: "a copy scores ≤ 0" holds as exactly 0.
"""

from __future__ import annotations

import random
import re

from selm.errors import DataError
from selm.tasks.base import Task
from selm.tasks.readability import flesch_kincaid_grade, words
from selm.tasks.registry import register_task
from selm.tasks.starting_model import StartingModelSettings

SUBJECTS = (
    ("the physician", "the doctor"), ("the municipal authority", "the city"),
    ("the pharmaceutical company", "the drug company"), ("the educational institution", "the school"),
    ("the committee", "the group"), ("the elderly patient", "the old patient"),
    ("the administration", "the office"), ("the manufacturer", "the maker"),
)
VERBS = (
    ("utilized", "used"), ("commenced", "began"), ("demonstrated", "showed"), ("terminated", "ended"),
    ("modified", "changed"), ("purchased", "bought"), ("constructed", "built"), ("discontinued", "stopped"),
    ("requested", "asked for"), ("facilitated", "helped with"), ("examined", "checked"), ("obtained", "got"),
)
OBJECTS = (
    ("the medication", "the drug"), ("the apparatus", "the tool"), ("the regulations", "the rules"),
    ("the documentation", "the papers"), ("the examination", "the test"), ("the residence", "the house"),
    ("the vehicle", "the car"), ("the procedure", "the process"), ("the information", "the facts"),
    ("the equipment", "the tools"),
)
# (hard connective inside one sentence, plain word opening the second sentence)
CONNECTIVES = ((", and consequently", "So"), (", whereupon", "Then"), (", although", "But"))
# Function words, not meaning: left out of the meaning check. Connectives (but, so, then) are kept:
# they carry the relation between the clauses.
STOPWORDS = frozenset(
    "a an the and or of to in on at by for with from as is are was were be been it its this that "
    "these those he she they we you i".split())
TARGET_GRADE = 6.0
KEEP_FLOOR = 0.5
MIN_LENGTH_RATIO = 0.5
UNFINISHED_FACTOR = 0.5
# How often the demonstrations use each plain phrase / split the sentence: the starting policy
# simplifies about half of each sentence, so preference training has something to find.
DEMO_SIMPLIFY = 0.5
_PROMPT_RE = re.compile(r"^Simplify: (.+)\nSimple:$", re.S)
_TOKEN_RE = re.compile(r"[A-Za-z0-9']+|[^\sA-Za-z0-9']")


def format_prompt(source: str) -> str:
    """The prompt asking to simplify ``source``."""
    return f"Simplify: {source}\nSimple:"


def parse_prompt(prompt: str) -> str:
    """The source sentence of a simplify prompt; a malformed prompt is a DataError."""
    match = _PROMPT_RE.match(prompt)
    if match is None:
        raise DataError(f"not a simplify prompt (expected 'Simplify: ...\\nSimple:'): {prompt[:80]!r}")
    return match.group(1)


def _stem(word: str) -> str:
    """A crude plural fold (``rules`` → ``rule``), so number changes do not count as meaning lost."""
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def content_words(text: str) -> list[str]:
    """The content words of ``text``: lowercased words that are not stopwords, plural-folded."""
    return [_stem(w) for w in words(text) if w not in STOPWORDS]


def _lexicon() -> dict[str, frozenset[str]]:
    """Each hard word (plural-folded) → the content words of the plain phrase(s) it belongs to."""
    lexicon: dict[str, set[str]] = {}
    for hard, plain in (*SUBJECTS, *VERBS, *OBJECTS, *((c.strip(", "), p) for c, p in CONNECTIVES)):
        for word in words(hard):
            lexicon.setdefault(_stem(word), set()).update(content_words(plain))
    return {word: frozenset(plain) for word, plain in lexicon.items()}


# For the meaning check: a source word counts as kept when it, or a word of the plain phrase it
# belongs to, appears in the response.
LEXICON = _lexicon()


def meaning_kept(source: str, response: str) -> float:
    """Recall of ``source``'s content words in ``response``, in [0, 1] (1 for a source without any):
    a word counts as kept when it, or a word of its plain phrase in ``LEXICON``, is in the response."""
    wanted = content_words(source)
    if not wanted:
        return 1.0
    present = {_stem(w) for w in words(response)}
    kept = sum(w in present or not present.isdisjoint(LEXICON.get(w, ())) for w in wanted)
    return kept / len(wanted)


def is_copy(source: str, response: str) -> bool:
    """True when the source's words and punctuation (lowercased) are a prefix of the response's."""
    src = _TOKEN_RE.findall(source.lower())
    return _TOKEN_RE.findall(response.lower())[:len(src)] == src


def simplify_reward(source: str, response: str) -> float:
    """Gold reward in [0, 1] of ``response`` as a simpler rewrite of ``source`` (module docstring)."""
    source_grade, grade = flesch_kincaid_grade(source), flesch_kincaid_grade(response)
    if source_grade is None or grade is None or is_copy(source, response):
        return 0.0
    if len(words(response)) < MIN_LENGTH_RATIO * len(words(source)):
        return 0.0
    keep = meaning_kept(source, response)
    if keep < KEEP_FLOOR:
        return 0.0
    gain = min(max((source_grade - grade) / max(source_grade - TARGET_GRADE, 1.0), 0.0), 1.0)
    finished = response.rstrip().endswith((".", "!", "?"))
    return gain * keep * (1.0 if finished else UNFINISHED_FACTOR)


def _clause(rng: random.Random) -> tuple[tuple[str, str], tuple[str, str], tuple[str, str]]:
    return rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS)


def _capitalized(text: str) -> str:
    return text[0].upper() + text[1:]


@register_task
class SimplifyTask(Task):
    """Rewrite a generated hard sentence more simply; see the module docstring."""

    name = "simplify"
    # Bump when prompts, demonstrations or the reward change: it is part of the model cache key.
    version = 1
    max_new_tokens = 32
    stop_strings = ("\n",)
    # Sentences are ~4× as long as sort's prompts: fewer, smaller steps build the model as fast.
    starting_model_settings = StartingModelSettings(vocab_size=600, steps=200, batch_size=32)

    def sample_prompt(self, rng: random.Random) -> str:
        (s1, v1, o1), connective, (s2, v2, o2) = _clause(rng), rng.choice(CONNECTIVES), _clause(rng)
        return format_prompt(f"{_capitalized(s1[0])} {v1[0]} {o1[0]}{connective[0]} {s2[0]} {v2[0]} {o2[0]}.")

    def gold_reward(self, prompts: list[str], responses: list[str]) -> list[float]:
        self._check_pairs(prompts, responses)
        return [simplify_reward(parse_prompt(p), r) for p, r in zip(prompts, responses)]

    def reference_responses(self, prompts: list[str]) -> list[str]:
        return [self._rewrite(parse_prompt(p), plain=1.0, rng=random.Random(0)) for p in prompts]

    def demonstration(self, prompt: str, rng: random.Random) -> str:
        """The source with each hard phrase replaced by its plain one with probability 1/2, and split
        into two sentences at the connective with probability 1/2."""
        return self._rewrite(parse_prompt(prompt), plain=DEMO_SIMPLIFY, rng=rng)

    @staticmethod
    def _rewrite(source: str, plain: float, rng: random.Random) -> str:
        """``source`` (a generated sentence) with each phrase made plain, and the sentence split,
        with probability ``plain`` each; a leading space, as responses follow ``Simple:``."""
        text = source[:-1]  # drop the final period; it is put back below
        for hard, easy in (*SUBJECTS, *VERBS, *OBJECTS):
            if rng.random() < plain:
                text = re.sub(rf"\b{hard}\b", easy, text, flags=re.I)
        for hard, easy in CONNECTIVES:
            if hard in text and rng.random() < plain:
                first, second = text.split(hard, 1)
                text = f"{first}. {easy} {second.lstrip()}"
        return " " + _capitalized(text) + "."
