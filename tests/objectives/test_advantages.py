"""The advantage estimators against plain-Python float64 math, the registry and its errors,
and the pairwise judge's win-rate reward."""

from __future__ import annotations

import doctest
import statistics

import pytest
import torch

from selm.errors import ConfigError
from selm.objectives.advantages import (
    AdvantageInputs,
    available_advantage_estimators,
    build_advantage_estimator,
    get_advantage_estimator,
    win_rate_rewards,
)
from selm.objectives.advantages import base as advantages_base

F64 = torch.float64
# Three prompts, interleaved and of unequal sizes (3, 4, 2 samples).
GROUPS = [2, 0, 1, 0, 2, 1, 1, 0, 1]
REWARDS = [0.5, 1.0, -0.2, 0.25, 1.5, 0.7, 0.7, -1.0, 3.0]
LENGTHS = [3, 1, 4, 2, 4, 1, 3, 2, 4]
KL = [[0.1 * (i + 1) - 0.03 * t for t in range(4)] for i in range(len(REWARDS))]  # per token, padding ignored


def inputs(rewards=REWARDS, groups=GROUPS, lengths=LENGTHS, kl=True, values=None) -> AdvantageInputs:
    width = max(lengths)
    mask = torch.tensor([[t < n for t in range(width)] for n in lengths])
    return AdvantageInputs(rewards=torch.tensor(rewards, dtype=F64), group_ids=torch.tensor(groups),
                           response_mask=mask,
                           kl=torch.tensor([row[:width] for row in KL[:len(rewards)]], dtype=F64) if kl else None,
                           values=None if values is None else torch.tensor(values, dtype=F64))


def members(i: int, groups=GROUPS) -> list[int]:
    return [j for j, g in enumerate(groups) if g == groups[i]]


def kl_sum(i: int) -> float:
    return sum(KL[i][:LENGTHS[i]])


def as_tokens(per_response: list[float], lengths=LENGTHS) -> torch.Tensor:
    width = max(lengths)
    return torch.tensor([[a if t < n else 0.0 for t in range(width)] for a, n in zip(per_response, lengths)], dtype=F64)


def test_registered_estimators_and_defaults():
    assert available_advantage_estimators() == ["dr_grpo", "gae", "grpo", "reinforce_pp", "reinforce_pp_baseline", "rloo"]
    assert vars(get_advantage_estimator("grpo")) == {"kl_coef": 0.0, "scale_rewards": "group"}
    assert vars(get_advantage_estimator("dr_grpo")) == {"kl_coef": 0.0, "scale_rewards": "none"}
    assert vars(get_advantage_estimator("rloo")) == {"kl_coef": 0.05, "normalize": False}
    assert vars(get_advantage_estimator("reinforce_pp")) == {"kl_coef": 0.01, "gamma": 1.0}
    assert vars(get_advantage_estimator("reinforce_pp_baseline")) == {"kl_coef": 0.0, "gamma": 1.0}
    assert vars(get_advantage_estimator("gae")) == {"kl_coef": 0.05, "gamma": 1.0, "lam": 0.95, "whiten": True}
    assert get_advantage_estimator("gae").requires == {"kl", "values"}
    assert get_advantage_estimator("gae", kl_coef=0.0).requires == {"values"}
    assert get_advantage_estimator("grpo").requires == frozenset()


def test_rloo_sums_to_zero_per_group_and_is_the_scaled_centred_reward():
    out = get_advantage_estimator("rloo", kl_coef=0.0)(inputs()).advantages
    first = out[:, 0].tolist()
    for group in set(GROUPS):
        assert abs(sum(a for a, g in zip(first, GROUPS) if g == group)) < 1e-15
    for i, a in enumerate(first):
        group = [REWARDS[j] for j in members(i)]
        k, mean = len(group), sum(group) / len(group)
        leave_one_out = REWARDS[i] - (sum(group) - REWARDS[i]) / (k - 1)
        assert a == pytest.approx(k / (k - 1) * (REWARDS[i] - mean), rel=1e-13, abs=1e-15)
        assert a == pytest.approx(leave_one_out, rel=1e-13, abs=1e-15)
    torch.testing.assert_close(out, as_tokens(first), rtol=0, atol=0)


def test_rloo_subtracts_the_summed_kl_from_the_reward():
    beta = 0.3
    out = get_advantage_estimator("rloo", kl_coef=beta)(inputs()).advantages[:, 0].tolist()
    shaped = [r - beta * kl_sum(i) for i, r in enumerate(REWARDS)]
    for i, a in enumerate(out):
        others = [shaped[j] for j in members(i) if j != i]
        assert a == pytest.approx(shaped[i] - sum(others) / len(others), rel=1e-13)


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
def test_grpo_by_hand(scale_rewards):
    out = get_advantage_estimator("grpo", scale_rewards=scale_rewards)(inputs()).advantages
    expected = []
    for i, r in enumerate(REWARDS):
        group = [REWARDS[j] for j in members(i)]
        centred = r - statistics.fmean(group)
        std = {"group": statistics.stdev(group), "batch": statistics.stdev(REWARDS), "none": None}[scale_rewards]
        expected.append(centred if std is None else centred / (std + 1e-4))
    torch.testing.assert_close(out, as_tokens(expected), rtol=1e-13, atol=1e-15)


def test_dr_grpo_is_grpo_without_the_std():
    torch.testing.assert_close(get_advantage_estimator("dr_grpo")(inputs()).advantages,
                               get_advantage_estimator("grpo", scale_rewards="none")(inputs()).advantages, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo", "reinforce_pp_baseline"])
def test_equal_rewards_give_zero_advantage(name):
    hyperparameters = {} if name == "dr_grpo" else {"kl_coef": 0.0}
    out = get_advantage_estimator(name, **hyperparameters)(inputs(rewards=[0.7] * len(REWARDS)))
    assert out.advantages.abs().max().item() == 0.0


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo", "reinforce_pp_baseline"])
def test_a_group_of_one_is_one_config_line(name):
    with pytest.raises(ConfigError, match=rf"advantage estimator '{name}' compares the samples of each prompt and "
                                          r"needs at least 2 per prompt \(sampling.n\), got a prompt with 1"):
        get_advantage_estimator(name)(inputs(groups=[0, 0, 1, 1, 2, 2, 3, 3, 4]))


def test_single_sample_estimators_accept_groups_of_one():
    for name in ("reinforce_pp", "gae"):
        values = [[0.0] * 4] * len(REWARDS)
        get_advantage_estimator(name)(inputs(groups=list(range(len(REWARDS))), values=values))


def token_rewards_by_hand(beta: float, outcome: list[float]) -> list[list[float]]:
    return [[-beta * KL[i][t] + (outcome[i] if t == LENGTHS[i] - 1 else 0.0) for t in range(LENGTHS[i])]
            for i in range(len(REWARDS))]


def whiten_by_hand(rows: list[list[float]]) -> torch.Tensor:
    flat = [x for row in rows for x in row]
    mean, variance = statistics.fmean(flat), statistics.variance(flat)
    return torch.tensor([[(row[t] - mean) / (variance + 1e-8) ** 0.5 if t < len(row) else 0.0 for t in range(4)]
                         for row in rows], dtype=F64)


def returns_by_hand(rewards: list[list[float]], gamma: float) -> list[list[float]]:
    return [[sum(gamma ** (s - t) * row[s] for s in range(t, len(row))) for t in range(len(row))] for row in rewards]


def test_reinforce_pp_whitens_the_discounted_returns_over_all_tokens():
    beta, gamma = 0.2, 0.9
    out = get_advantage_estimator("reinforce_pp", kl_coef=beta, gamma=gamma)(inputs()).advantages
    expected = whiten_by_hand(returns_by_hand(token_rewards_by_hand(beta, REWARDS), gamma))
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-14)
    valid = out[inputs().response_mask]
    assert valid.mean().item() == pytest.approx(0.0, abs=1e-14)
    assert valid.var().item() == pytest.approx(1.0, rel=1e-7)


def test_reinforce_pp_baseline_subtracts_the_group_mean_first():
    beta = 0.2
    out = get_advantage_estimator("reinforce_pp_baseline", kl_coef=beta)(inputs()).advantages
    centred = [r - statistics.fmean(REWARDS[j] for j in members(i)) for i, r in enumerate(REWARDS)]
    expected = whiten_by_hand(returns_by_hand(token_rewards_by_hand(beta, centred), 1.0))
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-14)


def test_gae_with_unit_gamma_lambda_and_zero_values_is_the_reward_to_go():
    beta = 0.2
    zero = [[0.0] * 4 for _ in REWARDS]
    out = get_advantage_estimator("gae", gamma=1.0, lam=1.0, kl_coef=beta, whiten=False)(inputs(values=zero))
    to_go = returns_by_hand(token_rewards_by_hand(beta, REWARDS), 1.0)
    expected = torch.tensor([row + [0.0] * (4 - len(row)) for row in to_go], dtype=F64)
    torch.testing.assert_close(out.advantages, expected, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(out.returns, expected, rtol=1e-13, atol=1e-15)


def test_the_judge_reward_sits_on_the_last_response_token():
    # γ = 1, λ = 0, V = 0, no KL: A_t = δ_t = r_t, which is R on the last token and 0 before it.
    zero = [[0.0] * 4 for _ in REWARDS]
    out = get_advantage_estimator("gae", lam=0.0, kl_coef=0.0, whiten=False)(inputs(values=zero)).advantages
    expected = [[r if t == n - 1 else 0.0 for t in range(4)] for r, n in zip(REWARDS, LENGTHS)]
    assert out.tolist() == expected


def test_gae_by_hand_with_values():
    gamma, lam, beta = 0.9, 0.8, 0.1
    values = [[0.3 * i - 0.1 * t for t in range(4)] for i in range(len(REWARDS))]
    out = get_advantage_estimator("gae", gamma=gamma, lam=lam, kl_coef=beta, whiten=False)(inputs(values=values))
    rewards = token_rewards_by_hand(beta, REWARDS)
    advantages, returns = [], []
    for i, row in enumerate(rewards):
        n, a = len(row), [0.0] * len(row)
        for t in reversed(range(n)):
            next_value = values[i][t + 1] if t + 1 < n else 0.0
            next_advantage = a[t + 1] if t + 1 < n else 0.0
            a[t] = row[t] + gamma * next_value - values[i][t] + gamma * lam * next_advantage
        advantages.append(a + [0.0] * (4 - n))
        returns.append([a[t] + values[i][t] for t in range(n)] + [0.0] * (4 - n))
    torch.testing.assert_close(out.advantages, torch.tensor(advantages, dtype=F64), rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(out.returns, torch.tensor(returns, dtype=F64), rtol=1e-13, atol=1e-15)
    whitened = get_advantage_estimator("gae", gamma=gamma, lam=lam, kl_coef=beta)(inputs(values=values))
    torch.testing.assert_close(whitened.advantages, whiten_by_hand([a[:n] for a, n in zip(advantages, LENGTHS)]),
                               rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(whitened.returns, out.returns, rtol=0, atol=0)


def test_empty_response_gets_nothing():
    out = get_advantage_estimator("reinforce_pp", kl_coef=0.0)(inputs(rewards=[1.0, 2.0, 3.0], groups=[0, 0, 0],
                                                                          lengths=[2, 0, 1]))
    assert out.advantages[1].abs().max().item() == 0.0


@pytest.mark.parametrize(("name", "hyperparameters", "message"), [
    ("grpo", {"scale_rewards": "prompt"}, "advantage estimator 'grpo': scale_rewards must be one of group, batch, none"),
    ("gae", {"lam": 1.5}, r"advantage estimator 'gae': lam must be in \[0.0, 1.0\], got 1.5"),
    ("gae", {"gamma": "1"}, "advantage estimator 'gae': gamma must be a finite number"),
    ("gae", {"whiten": "no"}, "advantage estimator 'gae': whiten must be true or false, got 'no'"),
    ("rloo", {"kl_coef": -0.1}, "advantage estimator 'rloo': kl_coef must be >= 0"),
    ("rloo", {"beta": 0.1}, r"advantage estimator 'rloo': unknown hyperparameter\(s\) beta; known: kl_coef, normalize"),
    ("reinforce_pp_baseline", {"gamma": 0.9}, r"unknown hyperparameter\(s\) gamma; known: kl_coef"),
    ("ppo", {}, "unknown advantage estimator 'ppo'; available: dr_grpo, gae, grpo, reinforce_pp"),
])
def test_bad_hyperparameters_are_one_line(name, hyperparameters, message):
    with pytest.raises(ConfigError, match=message):
        get_advantage_estimator(name, **hyperparameters)


def test_missing_kl_or_values_is_named():
    with pytest.raises(ConfigError, match="advantage estimator 'rloo' needs the field 'kl' of AdvantageInputs"):
        get_advantage_estimator("rloo")(inputs(kl=False))
    with pytest.raises(ConfigError, match="advantage estimator 'gae' needs the field 'values'"):
        get_advantage_estimator("gae", kl_coef=0.0)(inputs())


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="must be a prefix of each row"):
        AdvantageInputs(rewards=torch.zeros(1), group_ids=torch.zeros(1, dtype=torch.long),
                        response_mask=torch.tensor([[True, False, True]]))
    with pytest.raises(ValueError, match="rewards must be finite"):
        AdvantageInputs(rewards=torch.tensor([float("nan")]), group_ids=torch.zeros(1, dtype=torch.long),
                        response_mask=torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"kl has shape \(1, 3\), expected \(1, 2\)"):
        AdvantageInputs(rewards=torch.zeros(1), group_ids=torch.zeros(1, dtype=torch.long),
                        response_mask=torch.ones(1, 2, dtype=torch.bool), kl=torch.zeros(1, 3))
    with pytest.raises(ValueError, match="group_ids must be integers"):
        AdvantageInputs(rewards=torch.zeros(2), group_ids=torch.zeros(2), response_mask=torch.ones(2, 2, dtype=torch.bool))


def test_build_from_config_value():
    assert vars(build_advantage_estimator({"name": "gae", "lam": 1.0})) == vars(get_advantage_estimator("gae", lam=1.0))
    assert build_advantage_estimator("rloo").name == "rloo"
    with pytest.raises(ConfigError, match="advantage estimator must be a name or a mapping with a 'name' key"):
        build_advantage_estimator({"lam": 1.0})


def test_estimates_carry_no_gradient():
    rewards = torch.tensor(REWARDS, dtype=F64, requires_grad=True)
    out = get_advantage_estimator("grpo")(AdvantageInputs(rewards=rewards, group_ids=torch.tensor(GROUPS),
                                                          response_mask=inputs().response_mask))
    assert not out.advantages.requires_grad


def test_docstring_example_runs():
    result = doctest.testmod(advantages_base)
    assert result.attempted > 0 and result.failed == 0


def test_win_rate_by_hand():
    # P[i, j] = P(y_i ≻ y_j); the diagonal is ignored.
    p = torch.tensor([[0.5, 0.9, 1.0],
                      [0.1, 0.5, 0.4],
                      [0.0, 0.6, 0.5]], dtype=F64)
    assert win_rate_rewards(p).tolist() == pytest.approx([0.95, 0.25, 0.3], rel=1e-15)
    # Batched over prompts; complementary judgements average ½ per group.
    batch = torch.stack([p, 1 - p.T])
    rewards = win_rate_rewards(batch)
    assert rewards.shape == (2, 3) and rewards.mean(-1).tolist() == pytest.approx([0.5, 0.5], rel=1e-15)
    hard = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=F64)
    assert win_rate_rewards(hard).tolist() == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0], rel=1e-15)


def test_win_rate_needs_two_samples():
    with pytest.raises(ConfigError, match=r"it needs at least 2 per prompt \(sampling.n\)"):
        win_rate_rewards(torch.ones(4, 1, 1))
    with pytest.raises(ValueError, match=r"preferences must be \[..., n, n\]"):
        win_rate_rewards(torch.ones(2, 3))
