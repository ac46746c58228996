"""English readability statistics: words, sentences, syllables and the Flesch–Kincaid grade level.

    FKGL = 0.39 · words/sentences + 11.8 · syllables/words − 15.59        (Kincaid et al. 1975)

Syllables are counted by rule, not looked up: ``textstat`` 0.7.13 (the maintained library) counts
them with the CMU pronouncing dictionary, which it downloads through ``nltk`` on first use (network
at run time, which selm never needs; offline it raises ``LookupError``), and falls back to
``pyphen``'s hyphenation points, which are not syllables. The rules below are deterministic and
dependency-free; on the words of the ``simplify`` task they give the dictionary's counts
(``tests/tasks/test_readability.py`` checks hand-counted words and sentences):

1. count the groups of consecutive vowels (a, e, i, o, u, y);
2. a final ``e`` after a consonant is silent (``make``; not ``agree``), except in consonant + ``le``
   (``ta-ble``);
3. a final ``ed`` after a consonant is silent (``used``; not ``con-tin-ued``), except after ``t`` or
   ``d`` (``start-ed``);
4. a final ``es`` after a consonant is silent (``makes``), except after s, x, z, c or g (``box-es``);
5. every word has at least one syllable.

Vowel pairs that are two syllables (``cre-ate``, ``e-val-u-ate``) count as one: the task's word
lists avoid them.
"""

from __future__ import annotations

import re

_WORD_RE = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*|[0-9]+(?:[.,][0-9]+)*")
_VOWELS = "aeiouy"
_VOWEL_GROUP_RE = re.compile(f"[{_VOWELS}]+")
# A sentence ends at a run of terminal punctuation; text without any is one sentence.
_SENTENCE_END_RE = re.compile(r"[.!?]+")


def words(text: str) -> list[str]:
    """The words of ``text``, lowercased: runs of letters (with inner apostrophes) or numbers."""
    return [w.lower() for w in _WORD_RE.findall(text)]


def sentence_count(text: str) -> int:
    """Sentences in ``text``: the pieces between terminal punctuation (. ! ?) that hold a word; 0 for
    text without words."""
    return sum(1 for piece in _SENTENCE_END_RE.split(text) if _WORD_RE.search(piece))


def syllable_count(word: str) -> int:
    """Syllables of one English word by the rules of the module docstring (a number: 1 each digit group)."""
    w = word.lower()
    if not w.isalpha():
        return 1
    count = len(_VOWEL_GROUP_RE.findall(w))
    before = w[-3] if w.endswith(("ed", "es")) and len(w) > 3 else w[-2] if len(w) > 1 else ""
    if not before or before in _VOWELS:
        return max(count, 1)
    if w.endswith("e") and not (w.endswith("le") and len(w) > 2):
        count -= 1
    elif w.endswith("ed") and before not in "td":
        count -= 1
    elif w.endswith("es") and before not in "sxzcg":
        count -= 1
    return max(count, 1)


def flesch_kincaid_grade(text: str) -> float | None:
    """The Flesch–Kincaid grade level of ``text`` (US school grade; lower is easier); None for text
    without words."""
    tokens = words(text)
    if not tokens:
        return None
    syllables = sum(syllable_count(w) for w in tokens)
    return 0.39 * len(tokens) / sentence_count(text) + 11.8 * syllables / len(tokens) - 15.59
