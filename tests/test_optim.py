"""The shared optimiser pieces: AdamW's parameter groups, the learning-rate schedules, one step."""

from __future__ import annotations

import math

import pytest
import torch

from selm.optim import adamw, optimizer_step, transformers_schedule, warmup_cosine_factor, warmup_cosine_schedule


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 2, bias=False))


def test_weight_decay_on_matrices_only_and_frozen_parameters_left_out() -> None:
    net = model()
    net[2].weight.requires_grad_(False)
    optimizer = adamw(net.parameters(), lr=0.1, weight_decay=0.5, betas=(0.8, 0.9), eps=1e-6)
    decay, no_decay = optimizer.param_groups
    assert [p is net[0].weight for p in decay["params"]] == [True] and decay["weight_decay"] == 0.5
    assert {id(p) for p in no_decay["params"]} == {id(net[0].bias), id(net[1].weight), id(net[1].bias)}
    assert no_decay["weight_decay"] == 0.0
    assert decay["betas"] == (0.8, 0.9) and decay["eps"] == 1e-6 and decay["lr"] == 0.1


def test_decay_is_decoupled_from_the_gradient() -> None:
    # One step with a zero gradient: Adam's update is 0, so only the decay moves the weights.
    net = model()
    before = [p.detach().clone() for p in net.parameters()]
    optimizer = adamw(net.parameters(), lr=0.1, weight_decay=0.5)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for p, old in zip(net.parameters(), before):
        expected = old * (1 - 0.1 * 0.5) if p.ndim >= 2 else old
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=0)


def test_fused_kernel_only_where_asked_for_and_available() -> None:
    params = list(model().parameters())
    assert adamw(params, lr=1.0).defaults["fused"] is None  # torch's default kernel
    assert adamw(params, lr=1.0, fused_device=torch.device("cpu")).defaults["fused"] is True
    assert adamw(params, lr=1.0, fused_device=torch.device("meta")).defaults["fused"] is False


def test_warmup_cosine_factor() -> None:
    # Warm-up: the first step already learns, the last warm-up step is at the peak.
    assert [warmup_cosine_factor(s, 4, 20, 0.1) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warmup_cosine_factor(4, 4, 20, 0.1) == 1.0
    assert warmup_cosine_factor(12, 4, 20, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert warmup_cosine_factor(20, 4, 20, 0.1) == pytest.approx(0.1)
    # final_fraction 1: constant after the warm-up, exactly.
    assert {warmup_cosine_factor(s, 4, 20, 1.0) for s in range(3, 20)} == {1.0}


def test_schedules_set_the_learning_rate_of_each_step() -> None:
    net = model()
    optimizer = adamw(net.parameters(), lr=2.0)
    schedule = warmup_cosine_schedule(optimizer, warmup_steps=2, total_steps=6, final_fraction=0.5)
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert seen == [2.0 * warmup_cosine_factor(s, 2, 6, 0.5) for s in range(6)]

    optimizer = adamw(net.parameters(), lr=1.0)
    schedule = transformers_schedule(optimizer, "linear", warmup_ratio=0.25, total_steps=10)  # ⌈2.5⌉ = 3
    seen = []
    for _ in range(10):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert seen == pytest.approx([0, 1 / 3, 2 / 3, 1.0] + [(10 - s) / 7 for s in range(4, 10)])


def test_optimizer_step_clips_steps_schedules_and_clears() -> None:
    net = model()
    params = list(net.parameters())
    for p in params:
        p.grad = torch.full_like(p, 3.0)
    norm = math.sqrt(sum(9.0 * p.numel() for p in params))
    sgd = torch.optim.SGD(params, lr=0.5)
    schedule = torch.optim.lr_scheduler.LambdaLR(sgd, lambda step: 0.1)
    before = [p.detach().clone() for p in params]
    optimizer_step(sgd, schedule, params, max_grad_norm=1.0)
    # SGD: the update is lr × the clipped gradient, 3 / ‖g‖ per element; the weights are below 1 in
    # magnitude, so one float32 subtraction rounds by at most 2⁻²⁴.
    for p, old in zip(params, before):
        torch.testing.assert_close(p.detach(), old - 0.5 * 0.1 * 3.0 / norm, rtol=0, atol=2**-22)
        assert p.grad is None
    assert sgd.param_groups[0]["lr"] == pytest.approx(0.05)  # LambdaLR applies its factor at construction

    for p in params:
        p.grad = torch.full_like(p, 3.0)
    before = [p.detach().clone() for p in params]
    optimizer_step(sgd, None, params, max_grad_norm=None)
    for p, old in zip(params, before):
        torch.testing.assert_close(p.detach(), old - 0.05 * 3.0, rtol=0, atol=2**-22)
