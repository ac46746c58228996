"""The rollout objectives (grpo, ppo, rloo) against plain float64 math: the contract, each
loss_type's per-response losses and normaliser, and the gradients the papers promise (zero for
clipped tokens and for groups of equal rewards, dr_grpo's independence of response length)."""

from __future__ import annotations

import math

import pytest
import torch

from selm.errors import ConfigError
from selm.objectives import PreferenceBatch, RolloutBatch, available_objectives, get_objective
from selm.objectives.advantages import AdvantageInputs, get_advantage_estimator
from selm.objectives.rollout import LOSS_NORMALIZERS, StepTotals, micro_batch_loss

F64 = torch.float64


def batch(lengths: list[int], **rows: list[list[float]]) -> RolloutBatch:
    """A RolloutBatch from per-response lists (each row as long as its response); padding is 0.
    The policy log-probs are leaves that require grad."""
    width = max(lengths)
    mask = torch.tensor([[t < n for t in range(width)] for n in lengths])

    def tensor(values: list[list[float]]) -> torch.Tensor:
        return torch.tensor([row + [0.0] * (width - len(row)) for row in values], dtype=F64)

    fields = {name: tensor(values) for name, values in rows.items()}
    for name in ("policy_token_logps", "token_entropies", "values"):
        if name in fields:
            fields[name].requires_grad_()
    return RolloutBatch(response_mask=mask, **fields)


LENGTHS = [3, 1, 4]
POLICY = [[-1.0, -0.5, -2.0], [-0.3], [-1.5, -0.2, -0.9, -1.1]]
SAMPLING = [[-1.2, -0.5, -1.5], [-0.9], [-1.4, -0.6, -0.9, -0.7]]
REFERENCE = [[-0.8, -0.9, -2.2], [-0.1], [-1.0, -0.2, -1.3, -1.0]]
ADVANTAGE = [0.8, -1.1, 0.4]
ENTROPY = [[1.2, 0.7, 2.0], [0.1], [0.9, 1.4, 0.3, 0.6]]


def full_batch() -> RolloutBatch:
    return batch(LENGTHS, policy_token_logps=POLICY, sampling_token_logps=SAMPLING, reference_token_logps=REFERENCE,
                 advantages=[[a] * n for a, n in zip(ADVANTAGE, LENGTHS)], token_entropies=ENTROPY)


def token_loss_by_hand(i: int, t: int, beta: float, estimator: str, entropy_coef: float,
                       eps_low: float = 0.2, eps_high: float = 0.28) -> float:
    ratio, a = math.exp(POLICY[i][t] - SAMPLING[i][t]), ADVANTAGE[i]
    policy = -min(ratio * a, min(max(ratio, 1 - eps_low), 1 + eps_high) * a)
    d = POLICY[i][t] - REFERENCE[i][t]
    kl = {"k1": d, "k2": d * d / 2, "k3": math.exp(-d) + d - 1}[estimator]
    return policy + beta * kl - entropy_coef * ENTROPY[i][t]


# ---- the contract ----

def test_registered_rollout_objectives():
    assert available_objectives("RolloutBatch") == ["fl_gfn", "grpo", "pama", "ppo", "rloo"]


def test_requires_follow_the_hyperparameters():
    grpo = get_objective("grpo")
    assert grpo.requires == {"sampling_token_logps", "advantages", "reference_token_logps"}
    assert grpo.needs_reference and not grpo.needs_live_reference and grpo.response_roles == {"response"}
    no_kl = get_objective("grpo", beta=0.0, entropy_coef=0.01)
    assert no_kl.requires == {"sampling_token_logps", "advantages", "token_entropies"} and not no_kl.needs_reference
    assert get_objective("ppo").requires == {"sampling_token_logps", "advantages", "values", "old_values", "returns"}
    assert not get_objective("ppo").needs_reference
    assert get_objective("rloo").requires == {"sampling_token_logps", "advantages"}


def test_defaults():
    assert vars(get_objective("grpo")) == {
        "beta": 0.04, "epsilon_low": 0.2, "epsilon_high": 0.2, "loss_type": "grpo", "max_completion_length": None,
        "kl_estimator": "k3", "entropy_coef": 0.0}
    assert vars(get_objective("ppo")) == {
        "beta": 0.0, "epsilon_low": 0.2, "epsilon_high": 0.2, "loss_type": "bnpo", "max_completion_length": None,
        "kl_estimator": "k3", "entropy_coef": 0.0, "vf_coef": 0.1, "value_clip": 0.2}
    assert vars(get_objective("rloo")) == {"epsilon_low": 0.2, "epsilon_high": 0.2}
    assert {t: get_objective("grpo", loss_type=t, max_completion_length=4 if t == "dr_grpo" else None).loss_normalizer
            for t in LOSS_NORMALIZERS} == {"grpo": "sequences", "bnpo": "micro_batch_tokens", "dr_grpo": "sequences",
                                           "dapo": "tokens"}
    assert get_objective("rloo").loss_normalizer == "sequences"


@pytest.mark.parametrize(("hyperparameters", "message"), [
    ({"loss_type": "token_mean"}, "objective 'grpo': loss_type must be one of grpo, bnpo, dr_grpo, dapo"),
    ({"loss_type": "dr_grpo"}, "objective 'grpo': loss_type dr_grpo divides by a constant length: set "
                               "max_completion_length"),
    ({"loss_type": "dr_grpo", "max_completion_length": 0}, "set max_completion_length"),
    ({"max_completion_length": 256}, "max_completion_length is only used by loss_type dr_grpo"),
    ({"kl_estimator": "k4"}, "objective 'grpo': kl_estimator must be one of k1, k2, k3"),
    ({"epsilon_low": 1.0}, r"objective 'grpo': epsilon_low must be in \[0.0, 1.0\)"),
    ({"epsilon_high": -0.1}, "objective 'grpo': epsilon_high must be >= 0"),
    ({"beta": -0.1}, "objective 'grpo': beta must be >= 0"),
])
def test_invalid_grpo_hyperparameters(hyperparameters, message):
    with pytest.raises(ConfigError, match=message):
        get_objective("grpo", **hyperparameters)


def test_invalid_ppo_hyperparameters():
    with pytest.raises(ConfigError, match="objective 'ppo': value_clip must be > 0"):
        get_objective("ppo", value_clip=0.0)
    with pytest.raises(ConfigError, match="objective 'ppo': vf_coef must be >= 0"):
        get_objective("ppo", vf_coef=-1.0)


def test_batch_type_and_missing_fields_are_one_line():
    pairs = PreferenceBatch(policy_chosen_logps=torch.zeros(2), policy_rejected_logps=torch.zeros(2))
    with pytest.raises(ConfigError, match="objective 'grpo' trains on a RolloutBatch, got a PreferenceBatch"):
        get_objective("grpo")(pairs)
    with pytest.raises(ConfigError, match="objective 'dpo' trains on a PreferenceBatch, got a RolloutBatch"):
        get_objective("dpo")(full_batch())
    no_reference = batch(LENGTHS, policy_token_logps=POLICY, sampling_token_logps=SAMPLING,
                         advantages=[[a] * n for a, n in zip(ADVANTAGE, LENGTHS)])
    with pytest.raises(ConfigError, match="objective 'grpo' needs the field 'reference_token_logps' of RolloutBatch"):
        get_objective("grpo")(no_reference)
    assert get_objective("grpo", beta=0.0)(no_reference).losses.shape == (3,)


# ---- values: each loss_type ----

@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_grpo_losses_by_hand(loss_type, estimator):
    beta, entropy_coef, max_len = 0.1, 0.01, 6
    objective = get_objective("grpo", beta=beta, epsilon_high=0.28, loss_type=loss_type, kl_estimator=estimator,
                              entropy_coef=entropy_coef, max_completion_length=max_len if loss_type == "dr_grpo" else None)
    out = objective(full_batch())
    sums = [sum(token_loss_by_hand(i, t, beta, estimator, entropy_coef) for t in range(n)) for i, n in enumerate(LENGTHS)]
    divisor = {"grpo": LENGTHS, "bnpo": [1] * 3, "dapo": [1] * 3, "dr_grpo": [max_len] * 3}[loss_type]
    torch.testing.assert_close(out.losses, torch.tensor([s / d for s, d in zip(sums, divisor)], dtype=F64),
                               rtol=1e-13, atol=1e-15)
    assert out.losses.dtype == F64 and out.losses.requires_grad
    for key, value in out.metrics.items():
        assert value.dtype == F64 and value.shape == () and not value.requires_grad, key


def test_metrics_by_hand():
    out = get_objective("grpo", beta=0.1, epsilon_high=0.28, kl_estimator="k1")(full_batch())
    # ρ per token: response 0 (Â > 0): e^{0.2}, 1, e^{−0.5}; response 1 (Â < 0): e^{0.6};
    # response 2 (Â > 0): e^{−0.1}, e^{0.4}, 1, e^{−0.4}. High clip: e^{0.4} > 1.28 with Â > 0;
    # low clip: none (e^{−0.5} < 0.8 but Â > 0).
    assert out.metrics["clip_ratio/high_mean"].item() == pytest.approx(1 / 8, rel=1e-15)
    assert out.metrics["clip_ratio/low_mean"].item() == 0.0
    assert out.metrics["clip_ratio/region_mean"].item() == pytest.approx(1 / 8, rel=1e-15)
    d = [p - r for row_p, row_r in zip(POLICY, REFERENCE) for p, r in zip(row_p, row_r)]
    assert out.metrics["kl"].item() == pytest.approx(sum(d) / 8, rel=1e-13)
    assert out.metrics["entropy"].item() == pytest.approx(sum(map(sum, ENTROPY)) / 8, rel=1e-13)


# ---- normalisers ----

@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_each_normaliser_over_two_micro_batches(loss_type):
    max_len = 6
    objective = get_objective("grpo", beta=0.1, loss_type=loss_type,
                              max_completion_length=max_len if loss_type == "dr_grpo" else None)
    full = full_batch()
    parts = [slice(0, 2), slice(2, 3)]  # micro-batches of 2 responses (4 tokens) and 1 response (4 tokens)
    totals = StepTotals(sequences=3, tokens=8, micro_batches=2)
    step = 0.0
    for part in parts:
        micro = RolloutBatch(**{name: getattr(full, name)[part] for name in (
            "policy_token_logps", "response_mask", "sampling_token_logps", "reference_token_logps", "advantages")})
        step += micro_batch_loss(objective(micro).losses, micro.response_mask, objective.loss_normalizer, totals).item()
    tokens = [[token_loss_by_hand(i, t, 0.1, "k3", 0.0, eps_high=0.2) for t in range(n)] for i, n in enumerate(LENGTHS)]
    expected = {
        "grpo": sum(sum(row) / len(row) for row in tokens) / 3,  # mean over responses of token means
        "dapo": sum(map(sum, tokens)) / 8,  # token mean over the whole step
        "bnpo": (sum(map(sum, tokens[:2])) / 4 + sum(tokens[2]) / 4) / 2,  # mean of micro-batch token means
        "dr_grpo": sum(map(sum, tokens)) / (3 * max_len),  # token sum over B·L_max
    }[loss_type]
    assert step == pytest.approx(expected, rel=1e-13)


# ---- gradients ----

def test_equal_rewards_give_zero_policy_gradient():
    lengths = [2, 3, 1, 2]
    inputs = AdvantageInputs(rewards=torch.full((4,), 0.7, dtype=F64), group_ids=torch.tensor([0, 0, 1, 1]),
                             response_mask=torch.tensor([[t < n for t in range(3)] for n in lengths]))
    for estimator, objective in (("grpo", "grpo"), ("rloo", "rloo"), ("dr_grpo", "grpo")):
        advantages = get_advantage_estimator(estimator, kl_coef=0.0)(inputs).advantages
        b = batch(lengths, policy_token_logps=[[-0.5] * n for n in lengths],
                  sampling_token_logps=[[-0.7] * n for n in lengths], advantages=advantages.tolist())
        get_objective(objective, **({"beta": 0.0} if objective == "grpo" else {}))(b).losses.sum().backward()
        assert b.policy_token_logps.grad.abs().max().item() == 0.0, estimator


def test_clipped_tokens_have_zero_gradient():
    # One response of 4 tokens, ε_low = 0.2, ε_high = 0.28:
    # ρ = 1.5, Â = +1: clipped high; ρ = 0.5, Â = −1: clipped low; ρ = 1.5, Â = −1 and ρ = 0.5,
    # Â = +1: the unclipped branch is the smaller, the gradient is −Â·ρ / (tokens).
    ratios, advantages = [1.5, 0.5, 1.5, 0.5], [1.0, -1.0, -1.0, 1.0]
    b = batch([4], policy_token_logps=[[math.log(r) for r in ratios]], sampling_token_logps=[[0.0] * 4],
              advantages=[advantages])
    objective = get_objective("grpo", beta=0.0, epsilon_high=0.28, loss_type="dapo")
    out = objective(b)
    micro_batch_loss(out.losses, b.response_mask, objective.loss_normalizer, StepTotals(1, 4, 1)).backward()
    expected = [0.0, 0.0, 1.5 / 4, -0.5 / 4]
    torch.testing.assert_close(b.policy_token_logps.grad, torch.tensor([expected], dtype=F64), rtol=1e-15, atol=0)
    assert out.metrics["clip_ratio/high_mean"].item() == 0.25 and out.metrics["clip_ratio/low_mean"].item() == 0.25


def test_rloo_clips_the_sequence_ratio():
    # log ρ = Σ_t (policy − sampling): 0.5 (ρ = 1.65 > 1.2, Â > 0: clipped), −0.5 (ρ = 0.61 < 0.8,
    # Â < 0: clipped), 0.1 (inside: gradient −Â·ρ / B on every token).
    b = batch([2, 1, 2], policy_token_logps=[[-0.25, -0.25], [-0.5], [-0.05, -0.05]],
              sampling_token_logps=[[-0.5, -0.5], [0.0], [-0.1, -0.1]], advantages=[[1.0, 1.0], [-2.0], [0.5, 0.5]])
    out = get_objective("rloo")(b)
    expected_losses = [-1.2 * 1.0, 2.0 * 0.8, -math.exp(0.1) * 0.5]
    torch.testing.assert_close(out.losses, torch.tensor(expected_losses, dtype=F64), rtol=1e-15, atol=0)
    out.losses.mean().backward()
    g = -0.5 * math.exp(0.1) / 3
    torch.testing.assert_close(b.policy_token_logps.grad, torch.tensor([[0, 0], [0, 0], [g, g]], dtype=F64),
                               rtol=1e-14, atol=0)
    assert out.metrics["clip_ratio/region_mean"].item() == pytest.approx(2 / 3, rel=1e-15)


@pytest.mark.parametrize("loss_type", ["dr_grpo", "grpo"])
def test_dr_grpo_token_gradient_does_not_depend_on_length(loss_type):
    # The same first token (ρ = 1, Â = 1) in a response of 2 tokens and of 5 tokens, beside a fixed
    # other response: dr_grpo's gradient there is −1/(B·L_max) both times; grpo's is −1/(B·|y|).
    max_len = 8
    objective = get_objective("grpo", beta=0.0, loss_type=loss_type,
                              max_completion_length=max_len if loss_type == "dr_grpo" else None)
    grads = []
    for length in (2, 5):
        b = batch([length, 3], policy_token_logps=[[-1.0] * length, [-0.5] * 3],
                  sampling_token_logps=[[-1.0] * length, [-0.5] * 3], advantages=[[1.0] * length, [-0.3] * 3])
        out = objective(b)
        micro_batch_loss(out.losses, b.response_mask, objective.loss_normalizer, StepTotals(2, length + 3, 1)).backward()
        grads.append(b.policy_token_logps.grad[0, 0].item())
    if loss_type == "dr_grpo":
        assert grads == [pytest.approx(-1 / (2 * max_len), rel=1e-15)] * 2
    else:
        assert grads == [pytest.approx(-1 / (2 * 2), rel=1e-15), pytest.approx(-1 / (2 * 5), rel=1e-15)]


def test_kl_and_entropy_gradients_by_hand():
    beta, c = 0.3, 0.05
    b = full_batch()
    objective = get_objective("grpo", beta=beta, kl_estimator="k2", entropy_coef=c, loss_type="dapo")
    b.advantages.zero_()  # only the KL and entropy terms move the policy
    out = objective(b)
    micro_batch_loss(out.losses, b.response_mask, objective.loss_normalizer, StepTotals(3, 8, 1)).backward()
    # ∂(β·½d²)/∂log π_θ = β·d; ∂(−c·H)/∂H = −c; each over the 8 tokens.
    d = [[p - r for p, r in zip(row_p, row_r)] for row_p, row_r in zip(POLICY, REFERENCE)]
    expected = batch(LENGTHS, policy_token_logps=[[beta * x / 8 for x in row] for row in d]).policy_token_logps
    torch.testing.assert_close(b.policy_token_logps.grad, expected.detach(), rtol=1e-13, atol=1e-16)
    torch.testing.assert_close(b.token_entropies.grad, -c / 8 * b.mask, rtol=1e-15, atol=0)


# ---- PPO: the value loss ----

def test_ppo_value_loss_by_hand():
    eps_v, vf_coef = 0.2, 0.5
    # Token by token (V, V_old, G): inside the clip range; V above V_old + ε_v with the clipped branch
    # larger (its gradient is 0); V above V_old + ε_v with the unclipped branch larger; V below.
    values, old, returns = [[1.0, 2.0, 2.0, -1.0]], [[0.9, 1.5, 1.5, 0.0]], [[1.5, 3.0, 0.0, -2.0]]
    b = batch([4], policy_token_logps=[[-1.0] * 4], sampling_token_logps=[[-1.0] * 4], advantages=[[0.0] * 4],
              values=values, old_values=old, returns=returns)
    objective = get_objective("ppo", vf_coef=vf_coef, value_clip=eps_v)
    out = objective(b)
    by_hand, clipped = [], []
    for v, v_old, g in zip(values[0], old[0], returns[0]):
        v_clip = min(max(v, v_old - eps_v), v_old + eps_v)
        by_hand.append(0.5 * max((v - g) ** 2, (v_clip - g) ** 2))
        clipped.append((v_clip - g) ** 2 > (v - g) ** 2)
    assert clipped == [False, True, False, True]
    assert out.losses.item() == pytest.approx(vf_coef * sum(by_hand), rel=1e-14)  # bnpo: the token sum
    assert out.metrics["loss/value"].item() == pytest.approx(sum(by_hand) / 4, rel=1e-14)
    assert out.metrics["val/clipfrac"].item() == 0.5
    micro_batch_loss(out.losses, b.response_mask, objective.loss_normalizer, StepTotals(1, 4, 1)).backward()
    # Unclipped tokens: vf_coef·(V − G)/4; clipped ones (V outside V_old ± ε_v): 0.
    expected = [vf_coef * (1.0 - 1.5) / 4, 0.0, vf_coef * (2.0 - 0.0) / 4, 0.0]
    torch.testing.assert_close(b.values.grad, torch.tensor([expected], dtype=F64), rtol=1e-14, atol=0)


def test_ppo_policy_part_is_grpo():
    b = full_batch()
    zero = [[0.0] * n for n in LENGTHS]
    with_values = batch(LENGTHS, policy_token_logps=POLICY, sampling_token_logps=SAMPLING,
                        advantages=[[a] * n for a, n in zip(ADVANTAGE, LENGTHS)], values=zero, old_values=zero,
                        returns=zero)
    torch.testing.assert_close(get_objective("ppo")(with_values).losses,
                               get_objective("grpo", beta=0.0, loss_type="bnpo")(b).losses, rtol=0, atol=0)
