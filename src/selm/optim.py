"""The optimiser pieces every training loop shares: AdamW with decay on weight matrices only, the
learning-rate schedules, and one optimizer step (clip, step, schedule, clear gradients).

Used by ``selm train`` / the rounds' trainer, reward-model training, the SFT warm-up and the
starting-model build. Each loop keeps its own forward and loss; what is here is what they do alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch


def adamw(
    params: Iterable[torch.nn.Parameter],
    *,
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    fused_device: torch.device | None = None,
) -> torch.optim.AdamW:
    """AdamW over the parameters that require a gradient; weight decay on matrices only.

    Biases and norm gains (tensors with fewer than 2 dimensions) get no decay, as in transformers'
    Trainer: decaying a LayerNorm / RMSNorm gain towards 0 shrinks the layer's output.

    Args:
        params: the model's parameters; frozen ones (``requires_grad`` False) are left out.
        lr: peak learning rate (the schedule multiplies it).
        weight_decay: decoupled decay of the ≥ 2-D parameters, per unit learning rate.
        betas, eps: Adam's moment decays and denominator floor.
        fused_device: the device the optimizer will step on (parameters may still be elsewhere,
            e.g. before Accelerate moves them); its fused kernel is used when it has one (CPU,
            CUDA) and every parameter is floating point. None: torch's default kernel, whose
            results the cached builds (starting models, warm-ups) were made with.
    """
    trainable = [p for p in params if p.requires_grad]
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    # Always both groups, even one empty (a LoRA policy has only matrices): checkpoints keep their layout.
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = None
    if fused_device is not None:
        fused = torch.device(fused_device).type in ("cpu", "cuda") and all(p.is_floating_point() for p in trainable)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused)


def transformers_schedule(optimizer: torch.optim.Optimizer, kind: str, warmup_ratio: float,
                          total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """transformers' ``get_scheduler(kind)`` (``linear``, ``cosine``, ``constant``,
    ``constant_with_warmup``) with ⌈warmup_ratio · total_steps⌉ warm-up steps, as the Trainer does."""
    from transformers import get_scheduler

    return get_scheduler(kind, optimizer, num_warmup_steps=math.ceil(warmup_ratio * total_steps),
                         num_training_steps=total_steps)


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, final_fraction: float) -> float:
    """The learning rate of step ``step`` (0-based) as a fraction of the peak.

    Linear warm-up ``(step + 1) / warmup_steps`` (the first step already learns), then a cosine
    from 1 down to ``final_fraction`` at ``total_steps``; ``final_fraction = 1`` keeps it constant.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                           final_fraction: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler that sets the learning rate to peak × :func:`warmup_cosine_factor`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_factor(step, warmup_steps, total_steps, final_fraction))


def optimizer_step(optimizer: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LRScheduler | None,
                   params: Sequence[torch.nn.Parameter], max_grad_norm: float | None) -> None:
    """After ``loss.backward()``: clip the gradients of ``params`` to a total 2-norm of
    ``max_grad_norm`` (None: no clipping), step the optimizer and the schedule (None: a constant
    learning rate), drop the gradients.

    ``params`` is what the norm is taken over, in a fixed order (the sum's rounding depends on it).
    """
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    if schedule is not None:
        schedule.step()
    optimizer.zero_grad(set_to_none=True)
