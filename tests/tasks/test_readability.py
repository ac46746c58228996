"""The rule-based syllable counter and the Flesch–Kincaid grade against hand counts."""

import pytest

from selm.tasks.readability import flesch_kincaid_grade, sentence_count, syllable_count, words


@pytest.mark.parametrize(
    ("word", "syllables"),
    [
        ("the", 1), ("cat", 1), ("make", 1), ("free", 1), ("agree", 2), ("table", 2), ("people", 2),
        ("because", 2), ("used", 1), ("started", 2), ("ended", 2), ("makes", 1), ("boxes", 2), ("changes", 2),
        ("value", 2), ("continued", 3), ("discontinued", 4), ("utilized", 3), ("administered", 4),
        ("physician", 3), ("medication", 4), ("pharmaceutical", 5), ("consequently", 4), ("whereupon", 3),
        ("residence", 3), ("vehicle", 3), ("committee", 3), ("documentation", 5), ("Doctor", 2), ("42", 1),
    ],
)
def test_syllables_of_hand_counted_words(word: str, syllables: int) -> None:
    assert syllable_count(word) == syllables


@pytest.mark.parametrize(
    ("text", "n_words", "n_sentences", "n_syllables"),
    [
        # 6 one-syllable words, one sentence
        ("The cat sat on the mat.", 6, 1, 6),
        # the(1) phy-si-cian(3) ad-min-is-tered(4) the(1) me-di-ca-tion(4)
        ("The physician administered the medication.", 5, 1, 13),
        # the(1) doc-tor(2) gave(1) the(1) drug(1) | it(1) helped(1) | no end mark after the last one
        ("The doctor gave the drug. It helped! Then", 8, 3, 9),
    ],
)
def test_flesch_kincaid_grade_equals_the_hand_computation(text: str, n_words: int, n_sentences: int,
                                                          n_syllables: int) -> None:
    assert len(words(text)) == n_words and sentence_count(text) == n_sentences
    assert sum(syllable_count(w) for w in words(text)) == n_syllables
    expected = 0.39 * n_words / n_sentences + 11.8 * n_syllables / n_words - 15.59
    assert flesch_kincaid_grade(text) == pytest.approx(expected, abs=1e-12)


def test_numbers_by_hand_and_text_without_words() -> None:
    # 0.39·6 + 11.8·1 − 15.59 and 0.39·5 + 11.8·13/5 − 15.59
    assert flesch_kincaid_grade("The cat sat on the mat.") == pytest.approx(-1.45, abs=1e-12)
    assert flesch_kincaid_grade("The physician administered the medication.") == pytest.approx(17.04, abs=1e-12)
    assert flesch_kincaid_grade("") is None and flesch_kincaid_grade(" ... !") is None
    assert sentence_count("no end mark") == 1 and sentence_count("") == 0
