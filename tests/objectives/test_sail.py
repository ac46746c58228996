"""SAIL against plain float64 math: route-dependent loss, label resampling, the code's and the
paper's extra gradients (hand-derived)."""

from __future__ import annotations

import math

import pytest
import torch

from selm.objectives import PreferenceBatch, get_objective


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


BETA, RHO, PI, GAMMA = 0.3, 0.2, 0.4, 0.7
PW = [-12.0, -7.5, -20.0, -3.0, -9.0, -15.0, -4.0, -30.0]
PL = [-10.0, -9.0, -18.0, -6.0, -5.0, -16.0, -8.0, -25.0]
RW = [-11.0, -8.0, -21.0, -2.0, -10.0, -14.0, -5.0, -28.0]
RL = [-12.0, -7.0, -17.0, -4.0, -6.0, -15.5, -7.0, -27.0]
ROUTES = [0, 1, 2, 3, 0, 1, 2, 3]


def batch(requires_grad: bool = False) -> PreferenceBatch:
    t = {name: torch.tensor(v, dtype=torch.float64, requires_grad=requires_grad)
         for name, v in (("policy_chosen_logps", PW), ("policy_rejected_logps", PL))}
    return PreferenceBatch(**t, reference_chosen_logps=torch.tensor(RW, dtype=torch.float64),
                           reference_rejected_logps=torch.tensor(RL, dtype=torch.float64),
                           routes=torch.tensor(ROUTES, dtype=torch.float64))


def h(i: int) -> float:
    return (PW[i] - RW[i]) - (PL[i] - RL[i])


def plain_loss(i: int, flipped: bool) -> float:
    ell = logsig(BETA * (-h(i) if flipped else h(i)))
    return -ell - 0.5 * RHO * (ell if ROUTES[i] == 0 else 0) ** 2 - 0.5 * PI * (ell if ROUTES[i] == 1 else 0) ** 2


def test_outside_training_no_label_is_resampled():
    objective = get_objective("sail", beta=BETA, rho=RHO, pi=PI, gamma=GAMMA)
    with torch.no_grad():
        out = objective(batch())
    expected = [plain_loss(i, False) for i in range(len(PW))]
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert out.metrics["sail/flip_rate"].item() == 0.0
    assert [out.metrics[f"sail/route_{n}"].item() for n in ("dp", "pp", "pr", "offline")] == [0.25] * 4


@pytest.mark.parametrize("seed", range(4))
def test_code_gradient_by_hand(seed):
    """∂L̄/∂log π(y) = (1/B)·∂loss_i/∂h·(±1) − c_i·ℓ_i/log π(y), the hook bypassing the 1/B mean."""
    torch.manual_seed(seed)
    objective = get_objective("sail", beta=BETA, rho=RHO, pi=PI, gamma=GAMMA)
    b = batch(requires_grad=True)
    out = objective(b)
    out.losses.mean().backward()
    n = len(PW)
    for i in range(n):
        # The logged loss is the code's: one of the two labels, exactly (the extra term has value 0).
        candidates = [plain_loss(i, False), plain_loss(i, True)]
        value = out.losses[i].item()
        flipped = min((0, 1), key=lambda f: abs(candidates[f] - value)) == 1
        assert value == pytest.approx(candidates[flipped], abs=1e-12)
        if ROUTES[i] in (2, 3):
            assert not flipped
        z = BETA * (-h(i) if flipped else h(i))
        ell = logsig(z)
        c_sq = RHO if ROUTES[i] == 0 else PI if ROUTES[i] == 1 else 0.0
        d_loss_d_z = -sig(-z) * (1 + c_sq * ell)      # d(−ℓ − ½c ℓ²)/dz, dℓ/dz = σ(−z)
        sign = -1.0 if flipped else 1.0
        c_hook = PI if ROUTES[i] == 1 else GAMMA if ROUTES[i] == 2 else 0.0
        grad_w = d_loss_d_z * BETA * sign / n - c_hook * ell / PW[i]
        grad_l = -d_loss_d_z * BETA * sign / n - c_hook * ell / PL[i]
        assert b.policy_chosen_logps.grad[i].item() == pytest.approx(grad_w, rel=1e-10, abs=1e-14), i
        assert b.policy_rejected_logps.grad[i].item() == pytest.approx(grad_l, rel=1e-10, abs=1e-14), i


def test_code_hook_raises_the_likelihood_of_self_generated_responses():
    grads = []
    for gamma in (GAMMA, 0.0):
        torch.manual_seed(0)  # the same DP/PP label draws in both runs
        b = batch(requires_grad=True)
        get_objective("sail", beta=BETA, gamma=gamma)(b).losses.mean().backward()
        grads.append((b.policy_chosen_logps.grad, b.policy_rejected_logps.grad))
    pr = [i for i, r in enumerate(ROUTES) if r == 2]
    # The hook's share of the gradient is negative: a descent step raises log π of both samples.
    for added in (grads[0][0] - grads[1][0], grads[0][1] - grads[1][1]):
        assert all(added[i].item() < 0 for i in pr)
        assert all(added[i].item() == 0 for i in range(len(ROUTES)) if ROUTES[i] != 2)


def test_score_function_gradient_is_per_example():
    objective = get_objective("sail", beta=BETA, pi=0.0, gamma=GAMMA, extra_gradient="score_function")
    b = batch(requires_grad=True)
    out = objective(b)
    out.losses.mean().backward()
    n = len(PW)
    for i in (2, 3, 6, 7):  # PR and offline rows: never flipped
        z = BETA * h(i)
        c = GAMMA if ROUTES[i] == 2 else 0.0
        expected = (-sig(-z) * BETA - c * logsig(z)) / n
        assert b.policy_chosen_logps.grad[i].item() == pytest.approx(expected, rel=1e-10)


def test_flip_probability_is_one_minus_sigmoid_beta_h():
    torch.manual_seed(0)
    n = 20000
    # β·h = log 4: σ = 0.8, so a DP label flips with probability 0.2.
    hval = math.log(4) / BETA
    b = PreferenceBatch(policy_chosen_logps=torch.full((n,), -5.0 + hval, dtype=torch.float64, requires_grad=True),
                        policy_rejected_logps=torch.full((n,), -5.0, dtype=torch.float64, requires_grad=True),
                        reference_chosen_logps=torch.full((n,), -5.0, dtype=torch.float64),
                        reference_rejected_logps=torch.full((n,), -5.0, dtype=torch.float64),
                        routes=torch.zeros(n, dtype=torch.float64))
    out = get_objective("sail", beta=BETA)(b)
    assert out.metrics["sail/flip_rate"].item() == pytest.approx(0.2, abs=4 * math.sqrt(0.16 / n))
    # The expected loss is the cross-entropy of the policy's own label distribution.
    expected = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2))
    assert out.losses.mean().item() == pytest.approx(expected, abs=0.01)


def test_offline_routes_only_is_dpo():
    b = batch(requires_grad=True)
    b.routes = torch.full((len(PW),), 3.0, dtype=torch.float64)
    sail = get_objective("sail", beta=BETA, rho=RHO, pi=PI, gamma=GAMMA)(b).losses
    dpo = get_objective("dpo", beta=BETA)(b).losses
    torch.testing.assert_close(sail, dpo, rtol=1e-15, atol=1e-15)


def test_bad_extra_gradient_is_a_config_error():
    from selm.errors import ConfigError

    with pytest.raises(ConfigError, match="objective 'sail': extra_gradient must be one of code, score_function"):
        get_objective("sail", extra_gradient="hook")
