"""``pairwise`` judge: callables (per item, batched, both orders) and the optional PairRM backend."""

from __future__ import annotations

import math
import sys
import types

import pytest

from selm.errors import ConfigError, JudgeError, ModelLoadError
from selm.judges import build_judge

SOURCE = """
CALLS = []

def more_vowels(prompt, a, b):
    CALLS.append((a, b))
    va, vb = sum(c in "aeiou" for c in a), sum(c in "aeiou" for c in b)
    return 1.0 if va > vb else 0.0 if va < vb else 0.5

def biased(prompt, a, b):
    # prefers the first slot: 0.9 if a is longer, 0.7 otherwise
    return 0.9 if len(a) > len(b) else 0.7

def batch(prompts, a, b):
    return [0.25] * len(a)

def crash(prompt, a, b):
    raise KeyError(b)
"""


def judge(mod: str, name: str, **options):
    return build_judge({"kind": "pairwise", "callable": f"{mod}:{name}", **options})


def test_compare_per_item(user_module):
    mod = user_module(SOURCE)
    j = judge(mod, "more_vowels")
    assert j.is_pairwise
    assert j.compare(["p"] * 3, ["aa", "x", "ab"], ["a", "ae", "ub"]) == [1.0, 0.0, 0.5]
    assert sys.modules[mod].CALLS == [("aa", "a"), ("x", "ae"), ("ab", "ub")]


def test_both_orders_averages_and_asks_each_order(user_module):
    mod = user_module(SOURCE)
    j = judge(mod, "biased", both_orders=True)
    # (long, short): forward 0.9, backward (short, long) 0.7 -> ½(0.9 + 1 − 0.7) = 0.6
    assert j.compare(["p"], ["long"], ["s"]) == [pytest.approx(0.6)]
    # without both orders the slot bias shows
    assert judge(mod, "biased").compare(["p"], ["long"], ["s"]) == [0.9]


def test_rank_scores_round_robin_with_both_orders_asks_unordered_pairs(user_module):
    mod = user_module(SOURCE)
    j = judge(mod, "more_vowels", both_orders=True)
    scores = j.rank_scores("p", ["x", "aei", "ae"])
    assert scores == [0.0, 2.0, 1.0]
    # 3 unordered pairs, each asked in both orders (one batch: forward half, then backward half)
    assert sys.modules[mod].CALLS == [("x", "aei"), ("x", "ae"), ("aei", "ae"),
                                      ("aei", "x"), ("ae", "x"), ("ae", "aei")]


def test_rank_scores_round_robin_ordered_pairs(user_module):
    mod = user_module(SOURCE)
    # biased: P = 0.9 when the first is longer, else 0.7.
    # candidates "aaa"(0), "a"(1): ordered (0,1) -> 0.9, (1,0) -> 0.7
    # wins0 = ½·0.9 + ½·(1 − 0.7) = 0.6 ; wins1 = ½·0.1 + ½·0.7 = 0.4
    assert judge(mod, "biased").rank_scores("p", ["aaa", "a"]) == [pytest.approx(0.6), pytest.approx(0.4)]


def test_batched_callable(user_module):
    mod = user_module(SOURCE)
    assert judge(mod, "batch", batched=True).compare(["p", "q"], ["a", "b"], ["c", "d"]) == [0.25, 0.25]


def test_crash_names_item_and_order(user_module):
    mod = user_module(SOURCE)
    with pytest.raises(JudgeError) as err:
        judge(mod, "crash", both_orders=True).compare(["p"], ["a"], ["b"])
    assert str(err.value) == f"judge pairwise '{mod}:crash': item 0 (order a, b): the callable raised KeyError: 'b'"


def test_options_are_exclusive(user_module):
    mod = user_module(SOURCE)
    with pytest.raises(ConfigError, match="set exactly one of 'callable'"):
        build_judge({"kind": "pairwise", "callable": f"{mod}:batch", "model": "llm-blender/PairRM"})
    with pytest.raises(ConfigError, match="'batched' and 'both_orders' apply to a callable"):
        build_judge({"kind": "pairwise", "model": "llm-blender/PairRM", "both_orders": True})


def test_pairrm_without_llm_blender_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "llm_blender", None)  # makes `import llm_blender` raise ImportError
    with pytest.raises(ModelLoadError) as err:
        build_judge({"kind": "pairwise", "model": "llm-blender/PairRM"})
    assert str(err.value).startswith("judge 'pairwise': model 'llm-blender/PairRM' needs the 'llm_blender' "
                                     "package (pip install llm-blender): ModuleNotFoundError")


LOADED: list[tuple[str, str]] = []


class FakeBlender:
    """Stands in for llm_blender.Blender: logit = len(a) − len(b), as if both orders were scored."""

    def loadranker(self, path, device=None):
        LOADED.append((path, device))

    def compare(self, inputs, candidates_a, candidates_b, batch_size, return_logits, mode):
        assert return_logits is True and mode == "[A,B]+[B,A]" and batch_size == 3
        return [float(len(a) - len(b)) for a, b in zip(candidates_a, candidates_b, strict=True)]


def test_pairrm_backend_plumbing(monkeypatch):
    fake = types.ModuleType("llm_blender")
    fake.Blender = FakeBlender
    monkeypatch.setitem(sys.modules, "llm_blender", fake)
    j = build_judge({"kind": "pairwise", "model": "llm-blender/PairRM", "batch_size": 3, "device": "cpu"})
    assert LOADED[-1] == ("llm-blender/PairRM", "cpu")
    assert j.order_invariant and not j.both_orders
    sig = 1 / (1 + math.exp(-2.0))
    assert j.compare(["p"], ["abc"], ["a"]) == [pytest.approx(sig)]
    # order-invariant: the round robin asks each unordered pair once
    assert j.rank_scores("p", ["abc", "a"]) == [pytest.approx(sig), pytest.approx(1 - sig)]
