"""load_preference_data: TRL's standard / conversational / implicit-prompt formats, and each error
naming file, row and field."""

from __future__ import annotations

from typing import Any

import pytest

from selm.data import PreferencePair, load_preference_data
from selm.errors import DataError


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


SYSTEM = {"role": "system", "content": "Be brief."}
STANDARD = [{"prompt": "2+2=", "chosen": " 4", "rejected": " 5"},
            {"prompt": "Capital of France?", "chosen": " Paris", "rejected": " Rome", "explore": " Lyon"}]
CONVERSATIONAL = [{"prompt": [SYSTEM, user("2+2?")], "chosen": [assistant("4")], "rejected": [assistant("5")]},
                  {"prompt": [user("hi")], "chosen": [assistant("hello")], "rejected": [assistant("go away")],
                   "explore": [assistant("hey")]}]


@pytest.mark.parametrize("name", ["prefs.jsonl", "prefs.json", "prefs.parquet", "prefs.csv"])
def test_standard_format_in_every_file_type(write, name: str) -> None:
    data = load_preference_data(write(name, STANDARD))
    assert not data.conversational
    assert data.skipped_identical == []
    assert list(data) == [
        PreferencePair("2+2=", " 4", " 5", index=1),
        PreferencePair("Capital of France?", " Paris", " Rome", index=2, explore=" Lyon"),
    ]


@pytest.mark.parametrize("name", ["prefs.jsonl", "prefs.parquet"])
def test_conversational_format(write, name: str) -> None:
    data = load_preference_data(write(name, CONVERSATIONAL))
    assert data.conversational
    assert len(data) == 2
    assert data[0].prompt == [SYSTEM, user("2+2?")]
    assert data[0].chosen == [assistant("4")]
    assert data[0].rejected == [assistant("5")]
    assert data[0].explore is None
    assert data[1].explore == [assistant("hey")]
    assert [p.index for p in data] == [1, 2]


def test_implicit_prompt_is_the_shared_prefix(write) -> None:
    rows = [{"chosen": [SYSTEM, user("2+2?"), assistant("4")],
             "rejected": [SYSTEM, user("2+2?"), assistant("5"), user("sure?"), assistant("yes")]},
            {"chosen": [user("a"), assistant("b"), user("c"), assistant("d")],
             "rejected": [user("a"), assistant("b"), user("c"), assistant("e")]}]
    data = load_preference_data(write("implicit.jsonl", rows))
    assert data[0].prompt == [SYSTEM, user("2+2?")]
    assert data[0].chosen == [assistant("4")]
    assert data[0].rejected == [assistant("5"), user("sure?"), assistant("yes")]
    assert data[1].prompt == [user("a"), assistant("b"), user("c")]
    assert (data[1].chosen, data[1].rejected) == ([assistant("d")], [assistant("e")])


def test_extra_fields_are_kept(write) -> None:
    rows = [dict(STANDARD[0], score_chosen=9.5, source="mathqa")]
    data = load_preference_data(write("prefs.jsonl", rows))
    assert data[0].extra == {"score_chosen": 9.5, "source": "mathqa"}


def test_identical_rows_are_counted_and_skipped_with_a_warning(write) -> None:
    rows = [STANDARD[0], {"prompt": "q", "chosen": " same", "rejected": " same"}, STANDARD[1],
            {"chosen": [user("x"), assistant("y")], "rejected": [user("x"), assistant("y")]}]
    # The implicit-prompt tie (row 4) is conversational, but skipped rows do not decide the format.
    path = write("ties.jsonl", rows)
    with pytest.warns(UserWarning) as record:
        data = load_preference_data(path)
    assert [p.index for p in data] == [1, 3]
    assert data.skipped_identical == [2, 4]
    assert [str(w.message) for w in record] == [
        f"{path}: skipped 2 of 4 rows where chosen == rejected (rows 2, 4)"]


def test_only_identical_rows_is_an_error(write) -> None:
    path = write("ties.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "a"}])
    with pytest.warns(UserWarning, match="skipped 1 of 1 rows"), pytest.raises(DataError) as info:
        load_preference_data(path)
    assert str(info.value) == f"{path}: no usable rows: all 1 have chosen == rejected"


def test_empty_file_is_an_error(tmp_path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(DataError) as info:
        load_preference_data(path)
    assert str(info.value) == f"{path}: no rows"


def _bad_row(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Eleven good rows, then ``row`` at row 12."""
    return [STANDARD[0]] * 11 + [row]


def _bad_conversation(**fields: Any) -> list[dict[str, Any]]:
    return [CONVERSATIONAL[0]] * 11 + [dict(CONVERSATIONAL[0], **fields)]


@pytest.mark.parametrize("rows, expected", [
    (_bad_row({"prompt": "q", "chosen": ""}), "field 'chosen' is an empty string"),
    (_bad_row({"prompt": "q", "chosen": "   \n", "rejected": "r"}), "field 'chosen' is an empty string"),
    (_bad_row({"prompt": "q", "chosen": "c"}), "field 'rejected' is missing (the row's columns: prompt, chosen)"),
    (_bad_row({"prompt": "q", "chosen": "c", "rejected": None}),
     "field 'rejected' is missing (the row's columns: prompt, chosen)"),
    (_bad_row({"chosen": "c", "rejected": "r"}), "field 'prompt' is missing (the row's columns: chosen, rejected)"),
    (_bad_row({"prompt": 3, "chosen": "c", "rejected": "r"}),
     "field 'prompt' must be a string or a list of messages, got int"),
    (_bad_row({"prompt": "q", "chosen": "c", "rejected": "r", "explore": ""}), "field 'explore' is an empty string"),
    (_bad_row({"prompt": "q", "chosen": [assistant("c")], "rejected": "r"}),
     "field 'chosen' is conversational but field 'prompt' is standard; a row is all strings or all message lists"),
    (_bad_row(CONVERSATIONAL[0]),
     "field 'prompt' is conversational but row 1 is standard; all rows must use one format "
     "(standard: strings, conversational: lists of messages)"),
], ids=["empty", "whitespace", "missing", "null", "no-prompt", "wrong-type", "empty-explore", "mixed-in-row",
        "mixed-rows"])
def test_invalid_standard_rows(write, rows: list[dict[str, Any]], expected: str) -> None:
    path = write("prefs.jsonl", rows)
    with pytest.raises(DataError) as info:
        load_preference_data(path)
    assert str(info.value) == f"{path}: row 12: {expected}"


@pytest.mark.parametrize("rows, expected", [
    (_bad_conversation(chosen=[{"role": "assistant"}]), "field 'chosen' message 0 has no 'content'"),
    (_bad_conversation(prompt=[SYSTEM, {"content": "hi"}]), "field 'prompt' message 1 has no 'role'"),
    (_bad_conversation(prompt=[{"role": "human", "content": "hi"}]),
     "field 'prompt' message 0 has unknown role 'human'; expected one of system, developer, user, assistant, tool"),
    (_bad_conversation(rejected=[{"role": "assistant", "content": ["x"]}]),
     "field 'rejected' message 0 'content' must be a string, got list"),
    (_bad_conversation(rejected=["just text"]),
     "field 'rejected' message 0 must be an object with 'role' and 'content', got str"),
    (_bad_conversation(chosen=[]), "field 'chosen' is an empty list of messages"),
    (_bad_conversation(chosen=[user("4")]), "field 'chosen' must start with an assistant message, got role 'user'"),
    (_bad_conversation(chosen=[assistant(" ")]), "field 'chosen' has only empty message contents"),
    (_bad_conversation(prompt=[user("q"), assistant("a")]),
     "field 'prompt' ends with an assistant message; a prompt must end before the assistant's turn"),
    (_bad_conversation(explore=" text"),
     "field 'explore' is standard but field 'prompt' is conversational; a row is all strings or all message lists"),
    (_bad_conversation(prompt=None, chosen=[user("a"), assistant("b")], rejected=[user("z"), assistant("b")]),
     "field 'prompt' is missing, and 'chosen' and 'rejected' share no leading messages to take as the prompt"),
    (_bad_conversation(prompt=None, chosen=[user("a"), assistant("b")], rejected=[user("a"), assistant("b"),
                                                                                    user("c"), assistant("d")]),
     "field 'chosen' and 'rejected' share messages up to an assistant message; without a 'prompt' field the "
     "shared messages (the prompt) must end before the assistant's turn"),
], ids=["no-content", "no-role", "unknown-role", "content-type", "not-a-dict", "empty-list", "response-role",
        "empty-response", "prompt-ends-assistant", "mixed-explore", "implicit-no-prefix", "implicit-prefix-assistant"])
def test_invalid_conversational_rows(write, rows: list[dict[str, Any]], expected: str) -> None:
    path = write("chat.jsonl", rows)
    with pytest.raises(DataError) as info:
        load_preference_data(path)
    assert str(info.value) == f"{path}: row 12: {expected}"


def test_all_invalid_rows_are_reported_at_once(write) -> None:
    rows = [STANDARD[0], {"prompt": "q", "chosen": "", "rejected": "r"}] + [{"prompt": "q"}] * 7
    path = write("prefs.jsonl", rows)
    with pytest.raises(DataError) as info:
        load_preference_data(path)
    assert str(info.value) == (f"{path}: row 2: field 'chosen' is an empty string "
                               f"(and 7 more invalid rows: 3, 4, 5, 6, 7, ...)")


def test_parquet_row_numbers_in_errors(write) -> None:
    path = write("prefs.parquet", [STANDARD[0], {"prompt": "q", "chosen": "c", "rejected": ""}])
    with pytest.raises(DataError) as info:
        load_preference_data(path)
    assert str(info.value) == f"{path}: row 2: field 'rejected' is an empty string"
