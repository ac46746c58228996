"""Forward-looking GFlowNet fine-tuning (modified SubTB) in float64: the residuals telescope into
trajectory balance, the loss matches a plain double loop, and a tabular policy trained to zero loss
samples in proportion to the reward."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from selm.errors import ConfigError
from selm.objectives import RolloutBatch, get_objective
from selm.objectives.gflownet import transition_residuals


def random_batch(seed: int, lengths: list[int], width: int) -> RolloutBatch:
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]

    def field(low: float, high: float) -> torch.Tensor:
        return (low + (high - low) * torch.rand(len(lengths), width, generator=g, dtype=torch.float64)) * mask

    return RolloutBatch(policy_token_logps=field(-4.0, -0.1), response_mask=mask,
                        termination_token_logps=field(-6.0, -0.01), prefix_rewards=field(-1.0, 2.0))


def test_residuals_telescope_into_the_trajectory_balance_residual():
    tau = 0.7
    batch = random_batch(0, [5, 3, 1], 5)
    delta, valid = transition_residuals(batch, tau)
    for b, n in enumerate([5, 3, 1]):
        assert valid[b].sum().item() == n - 1
        log_r = batch.prefix_rewards[b] / tau
        term = batch.termination_token_logps[b]
        # log F(s_0) + Σ log π(y_t) + log π(⊤|s_{n−1}) − log R(s_{n−1}⊤), log F(s) = log R(s⊤) − log π(⊤|s)
        tb = (log_r[0] - term[0]) + batch.policy_token_logps[b, :n - 1].sum() + term[n - 1] - log_r[n - 1]
        torch.testing.assert_close(delta[b].sum(), tb, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lam", [1.0, 0.9])
def test_loss_matches_a_double_loop(lam):
    lengths = [6, 4, 2, 1]
    batch = random_batch(1, lengths, 6)
    out = get_objective("fl_gfn", subtb_lambda=lam, reward_temperature=0.8)(batch)
    r = (batch.prefix_rewards / 0.8).tolist()
    pf, term = batch.policy_token_logps.tolist(), batch.termination_token_logps.tolist()
    expected = []
    for b, n in enumerate(lengths):
        delta = [r[b][t] + pf[b][t] + term[b][t + 1] - r[b][t + 1] - term[b][t] for t in range(n - 1)]
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        num = sum(lam ** (j - i - 1) * sum(delta[i:j]) ** 2 for i, j in pairs)
        den = sum(lam ** (j - i - 1) for i, j in pairs)
        expected.append(num / den if pairs else 0.0)
    # Sums of ≤ 15 terms of O(10): float64 rounding ~1e-14.
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64), rtol=1e-11, atol=1e-12)


VOCAB, EOS, MAX_LEN = 2, 2, 3  # tokens 0, 1 and EOS; responses of at most 3 tokens


def test_zero_loss_samples_in_proportion_to_the_reward():
    # Every response of length ≤ 3 over {0, 1}: 15 terminal strings; the states of length 3 must end.
    strings = [s for n in range(MAX_LEN + 1) for s in itertools.product(range(VOCAB), repeat=n)]
    index = {s: k for k, s in enumerate(strings)}
    g = torch.Generator().manual_seed(0)
    log_reward = 3 * torch.rand(len(strings), generator=g, dtype=torch.float64)  # log R(s⊤), any positive R
    logits = torch.zeros(len(strings), VOCAB + 1, dtype=torch.float64, requires_grad=True)
    ends = torch.tensor([len(s) == MAX_LEN for s in strings])

    def log_policy() -> torch.Tensor:  # [states, V+1]; at length 3 only EOS
        masked = logits.masked_fill(ends[:, None] & (torch.arange(VOCAB + 1) != EOS)[None, :], -math.inf)
        return torch.log_softmax(masked, -1)

    # The off-policy batch: every string followed by EOS, one row each.
    width = MAX_LEN + 1
    states = torch.tensor([[index[s[:t]] for t in range(min(len(s) + 1, width))] + [0] * (width - len(s) - 1)
                           for s in strings])
    tokens = torch.tensor([list(s) + [EOS] + [0] * (width - len(s) - 1) for s in strings])
    mask = torch.arange(width)[None, :] < torch.tensor([len(s) + 1 for s in strings])[:, None]
    objective = get_objective("fl_gfn")

    def loss() -> torch.Tensor:
        lp = log_policy()
        token_logps = lp[states, tokens] * mask
        term = lp[states, EOS] * mask
        batch = RolloutBatch(policy_token_logps=token_logps, response_mask=mask, termination_token_logps=term,
                             prefix_rewards=log_reward[states] * mask)
        return objective(batch).losses.mean()

    optimizer = torch.optim.Adam([logits], lr=0.05)
    for _ in range(3000):
        optimizer.zero_grad()
        value = loss()
        if value.item() < 1e-20:
            break
        value.backward()
        optimizer.step()
    assert value.item() < 1e-16
    lp = log_policy().detach()
    sample_logp = torch.tensor([sum(lp[index[s[:t]], s[t]].item() for t in range(len(s))) + lp[index[s], EOS].item()
                                for s in strings], dtype=torch.float64)
    target = log_reward - torch.logsumexp(log_reward, 0)
    # Zero loss ⇒ exact proportionality; a residual loss ε leaves |δ| ≲ √ε per transition, and a
    # log-probability sums at most 3 of them: 3·1e-8.
    assert torch.logsumexp(sample_logp, 0).item() == pytest.approx(0.0, abs=1e-12)
    torch.testing.assert_close(sample_logp, target, rtol=0, atol=3e-8)


def test_bad_hyperparameters():
    with pytest.raises(ConfigError, match="objective 'fl_gfn': subtb_lambda must be > 0"):
        get_objective("fl_gfn", subtb_lambda=0.0)
    with pytest.raises(ConfigError, match="objective 'fl_gfn': reward_temperature must be > 0"):
        get_objective("fl_gfn", reward_temperature=-1.0)
