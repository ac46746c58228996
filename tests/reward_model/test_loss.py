"""The Bradley–Terry loss with a margin and label smoothing, against its formula in float64."""

from __future__ import annotations

import math

import pytest
import torch

from selm.reward_model import bradley_terry_loss


def test_bradley_terry_loss_matches_float64_formula():
    g = torch.Generator().manual_seed(0)
    r_c, r_r, m = (torch.randn(9, generator=g, dtype=torch.float64) * 3 for _ in range(3))
    eps = 0.1
    got = bradley_terry_loss(r_c, r_r, m, eps)
    for i in range(9):
        z = float(r_c[i] - r_r[i] - m[i])
        expected = -(1 - eps) * math.log(1 / (1 + math.exp(-z))) - eps * math.log(1 / (1 + math.exp(z)))
        assert float(got[i]) == pytest.approx(expected, rel=1e-12)
    assert torch.equal(bradley_terry_loss(r_c, r_r), -torch.nn.functional.logsigmoid(r_c - r_r))
