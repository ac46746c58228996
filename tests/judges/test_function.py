"""``function`` judge: loading user callables and calling them."""

from __future__ import annotations

import pytest

from selm.errors import ConfigError, JudgeError
from selm.judges import build_judge

SOURCE = """
def overlap(prompt, response):
    return float(len(set(prompt) & set(response)))

def overlap_batch(prompts, responses):
    return [float(len(set(p) & set(r))) for p, r in zip(prompts, responses)]

def explode_on_b(prompt, response):
    if response == "b":
        raise ValueError("cannot score b")
    return 0.0

def explode_batch(prompts, responses):
    raise RuntimeError("model offline")

class Scorer:
    @staticmethod
    def length(prompt, response):
        return float(len(response))

NOT_CALLABLE = 3
"""


def test_module_callable_per_item_and_batched(user_module):
    mod = user_module(SOURCE)
    per_item = build_judge({"kind": "function", "callable": f"{mod}:overlap"})
    batched = build_judge({"kind": "function", "callable": f"{mod}:overlap_batch", "batched": True})
    prompts, responses = ["abc", "xyz", "aab"], ["cab", "xa", "q"]
    assert per_item.score(prompts, responses) == [3.0, 1.0, 0.0]
    assert batched.score(prompts, responses) == [3.0, 1.0, 0.0]


def test_dotted_attribute(user_module):
    mod = user_module(SOURCE)
    judge = build_judge({"kind": "function", "callable": f"{mod}:Scorer.length"})
    assert judge.score(["p", "p"], ["abcd", ""]) == [4.0, 0.0]


def test_file_path_form(tmp_path):
    path = tmp_path / "rewards" / "my_reward.py"
    path.parent.mkdir()
    path.write_text("def score(prompt, response):\n    return 2.0 * len(response) - len(prompt)\n")
    judge = build_judge({"kind": "function", "callable": f"{path}:score"})
    assert judge.score(["ab", "abcd"], ["xyz", "x"]) == [4.0, -2.0]
    assert judge.name == f"function '{path}:score'"


def test_exception_in_callable_names_the_item(user_module):
    mod = user_module(SOURCE)
    judge = build_judge({"kind": "function", "callable": f"{mod}:explode_on_b"})
    with pytest.raises(JudgeError) as err:
        judge.score(["p"] * 3, ["a", "c", "b"])
    assert str(err.value) == (f"judge function '{mod}:explode_on_b': item 2: "
                              f"the callable raised ValueError: cannot score b")


def test_exception_in_batched_callable(user_module):
    mod = user_module(SOURCE)
    judge = build_judge({"kind": "function", "callable": f"{mod}:explode_batch", "batched": True})
    with pytest.raises(JudgeError, match=r"the callable raised RuntimeError on the batch: model offline"):
        judge.score(["p"], ["a"])


@pytest.mark.parametrize(
    "reference, message",
    [
        ("no_colon", "must look like 'package.module:function' or 'path/file.py:function'"),
        ("selm_no_such_module_xyz:f", "cannot import 'selm_no_such_module_xyz': ModuleNotFoundError"),
        ("/no/such/file.py:f", "no such file '/no/such/file.py'"),
        ("{mod}:missing", "'{mod}' has no attribute 'missing'"),
        ("{mod}:NOT_CALLABLE", "'NOT_CALLABLE' is a int, not a callable"),
    ],
)
def test_bad_references_are_config_errors(user_module, reference, message):
    mod = user_module(SOURCE)
    with pytest.raises(ConfigError) as err:
        build_judge({"kind": "function", "callable": reference.format(mod=mod)})
    assert str(err.value).startswith(f"judge 'function': callable '{reference.format(mod=mod)}'")
    assert message.format(mod=mod) in str(err.value)


def test_file_that_fails_to_import(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('boom at import')\n")
    with pytest.raises(ConfigError, match=r"importing '.*broken.py' failed: RuntimeError: boom at import"):
        build_judge({"kind": "function", "callable": f"{path}:f"})
