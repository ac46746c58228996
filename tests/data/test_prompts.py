"""load_prompts: plain and conversational prompts from any column, validated like preference data."""

from __future__ import annotations

import pytest

from selm.data import load_prompts
from selm.errors import DataError

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]


@pytest.mark.parametrize("name", ["prompts.jsonl", "prompts.parquet", "prompts.csv", "prompts.json"])
def test_plain_prompts(write, name: str) -> None:
    path = write(name, [{"prompt": "a", "id": 1}, {"prompt": "b", "id": 2}])
    assert load_prompts(path) == ["a", "b"]


def test_conversational_prompts_from_another_field(write) -> None:
    path = write("prompts.jsonl", [{"messages": CHAT}, {"messages": CHAT[1:]}])
    assert load_prompts(path, field="messages") == [CHAT, CHAT[1:]]


@pytest.mark.parametrize("row, expected", [
    ({"text": "a"}, "field 'prompt' is missing (the row's columns: text)"),
    ({"prompt": ""}, "field 'prompt' is an empty string"),
    ({"prompt": {"role": "user"}}, "field 'prompt' must be a string or a list of messages, got dict"),
    ({"prompt": [{"role": "user", "content": 1}]}, "field 'prompt' message 0 'content' must be a string, got int"),
    ({"prompt": [*CHAT, {"role": "assistant", "content": "x"}]},
     "field 'prompt' ends with an assistant message; a prompt must end before the assistant's turn"),
    ({"prompt": CHAT}, "field 'prompt' is conversational but row 1 is standard; all rows must use one format "
                       "(standard: strings, conversational: lists of messages)"),
], ids=["missing", "empty", "wrong-type", "content-type", "ends-with-assistant", "mixed"])
def test_invalid_prompt_rows(write, row: dict, expected: str) -> None:
    path = write("prompts.jsonl", [{"prompt": "fine"}, row])
    with pytest.raises(DataError) as info:
        load_prompts(path)
    assert str(info.value) == f"{path}: row 2: {expected}"
