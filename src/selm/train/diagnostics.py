"""Gradient-entanglement diagnostics (Yuan et al. 2024, "A Common Pitfall of Margin-based Language
Model Alignment: Gradient Entanglement", https://arxiv.org/abs/2410.13828).

With g_c = ∇θ log π(y_c|x) and g_r = ∇θ log π(y_r|x) (summed response log-probs, gradients over
the trainable parameters: all weights, or only the LoRA adapters), one gradient step on a margin
loss with equal weights on both log-probs changes them by (to first order, up to a positive factor)

    Δ log π(y_c) ∝ ‖g_c‖² − ⟨g_c, g_r⟩          Δ log π(y_r) ∝ ⟨g_c, g_r⟩ − ‖g_r‖²

so the chosen log-prob rises and the rejected one falls together only when
``⟨g_c, g_r⟩ / min(‖g_c‖², ‖g_r‖²) < 1``. That ratio (with *both* norms: the authors' script
uses ‖g_c‖ twice), the cosine and the inner product are what ``pair_gradient_stats`` measures on a
fixed probe set of pairs. ``logp_shift_metrics`` measures the outcome over a whole round: the
fraction of pairs whose chosen log-prob fell, or whose rejected log-prob rose.

Cost: one forward of the probe pairs and one backward per probe *sequence* (2K backwards for K
pairs), each as expensive as a training backward of one sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from selm.data import TokenizedPair, collate_preference_rows
from selm.engine import sequence_stats

# Diagnostics keys in train_log.jsonl rows and (averaged over a round) in metrics.jsonl.
GRAD_KEYS = ("diag/grad_inner", "diag/grad_cosine", "diag/grad_ratio", "diag/grad_norm_chosen",
             "diag/grad_norm_rejected", "diag/grad_entangled_frac")


@dataclass
class PairGradientStats:
    """Per-pair gradient geometry of K pairs; every field [K] float64.

    Attributes:
        inner: ⟨g_c, g_r⟩.
        chosen_sq_norm: ‖g_c‖².
        rejected_sq_norm: ‖g_r‖².
    """

    inner: torch.Tensor
    chosen_sq_norm: torch.Tensor
    rejected_sq_norm: torch.Tensor

    @property
    def cosine(self) -> torch.Tensor:
        """[K] ⟨g_c, g_r⟩ / (‖g_c‖·‖g_r‖); 0 where a gradient is zero."""
        denom = (self.chosen_sq_norm * self.rejected_sq_norm).sqrt()
        return torch.where(denom > 0, self.inner / denom.clamp_min(1e-300), torch.zeros_like(denom))

    @property
    def ratio(self) -> torch.Tensor:
        """[K] ⟨g_c, g_r⟩ / min(‖g_c‖², ‖g_r‖²): ≥ 1 means the two log-probs move together."""
        low = torch.minimum(self.chosen_sq_norm, self.rejected_sq_norm)
        return torch.where(low > 0, self.inner / low.clamp_min(1e-300), torch.zeros_like(low))

    def metrics(self) -> dict[str, float]:
        """Means over the K pairs, keyed by ``GRAD_KEYS`` (norms are ‖g‖, not squared)."""
        return {
            "diag/grad_inner": float(self.inner.mean()),
            "diag/grad_cosine": float(self.cosine.mean()),
            "diag/grad_ratio": float(self.ratio.mean()),
            "diag/grad_norm_chosen": float(self.chosen_sq_norm.sqrt().mean()),
            "diag/grad_norm_rejected": float(self.rejected_sq_norm.sqrt().mean()),
            "diag/grad_entangled_frac": float((self.ratio >= 1).double().mean()),
        }


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters the optimizer updates (for a PEFT model: the adapters only)."""
    return [p for p in model.parameters() if p.requires_grad]


def _flat_grad(output: torch.Tensor, params: list[torch.nn.Parameter], retain: bool) -> list[torch.Tensor]:
    grads = torch.autograd.grad(output, params, retain_graph=retain, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """Σ over parameters of ⟨a_i, b_i⟩, accumulated in float64 (bf16 gradients would lose digits)."""
    return sum((x.double() * y.double()).sum() for x, y in zip(a, b)).cpu()


def pair_gradient_stats(
    model: torch.nn.Module,
    pairs: Sequence[TokenizedPair],
    pad_token_id: int,
    *,
    chunk_size: int = 1024,
    batch_size: int = 8,
    with_inner: bool = True,
) -> PairGradientStats:
    """⟨g_c, g_r⟩, ‖g_c‖², ‖g_r‖² of every pair, g = ∇θ of the summed response log-prob.

    The model runs in eval mode (no dropout noise in the gradients) and its ``.grad`` buffers are
    untouched: gradients come from ``torch.autograd.grad``. Sequences of a batch do not interact,
    so one forward per ``batch_size`` pairs serves all of their per-sequence backwards.

    Args:
        model: the policy (possibly PEFT-wrapped); its trainable parameters define θ.
        pairs: the K probe pairs.
        pad_token_id: the tokenizer's pad id.
        chunk_size: output-layer chunk of the log-prob engine.
        batch_size: pairs per forward.
        with_inner: False skips the inner product (``inner`` is then zeros) and keeps one
            gradient at a time in memory instead of two.

    Returns:
        PairGradientStats with [K] float64 tensors on the CPU.
    """
    params = trainable_parameters(model)
    if not params:
        raise ValueError("the model has no trainable parameters")
    was_training = model.training
    model.eval()
    inner, chosen_sq, rejected_sq = [], [], []
    try:
        with torch.enable_grad():
            for start in range(0, len(pairs), batch_size):
                chunk = list(pairs[start:start + batch_size])
                device = params[0].device
                batch, layout = collate_preference_rows(chunk, pad_token_id)
                logps = sequence_stats(model, batch.to(device), chunk_size=chunk_size).logps
                chosen, rejected = logps[layout.rows("chosen")], logps[layout.rows("rejected")]
                for i in range(len(chunk)):
                    last = i == len(chunk) - 1
                    g_c = _flat_grad(chosen[i], params, retain=True)
                    chosen_sq.append(_dot(g_c, g_c))
                    if not with_inner:
                        del g_c
                    g_r = _flat_grad(rejected[i], params, retain=not last)
                    rejected_sq.append(_dot(g_r, g_r))
                    inner.append(_dot(g_c, g_r) if with_inner else torch.zeros((), dtype=torch.float64))
    finally:
        model.train(was_training)
    return PairGradientStats(torch.stack(inner), torch.stack(chosen_sq), torch.stack(rejected_sq))


def logp_shift_metrics(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> dict[str, float]:
    """How the round moved the log-probs of its own training pairs.

    Args:
        before: ``{"chosen": [P], "rejected": [P]}`` summed log-probs under the round-start policy.
        after: the same under the trained policy.

    Returns:
        ``diag/chosen_logp_fell_frac`` and ``diag/rejected_logp_rose_frac`` (fractions of the P
        pairs), ``diag/both_logp_fell_frac`` (the synchronized decrease of gradient entanglement),
        and the mean changes ``diag/chosen_logp_delta`` / ``diag/rejected_logp_delta`` (nats).
    """
    d_c = after["chosen"].double() - before["chosen"].double()
    d_r = after["rejected"].double() - before["rejected"].double()
    return {
        "diag/chosen_logp_fell_frac": float((d_c < 0).double().mean()),
        "diag/rejected_logp_rose_frac": float((d_r > 0).double().mean()),
        "diag/both_logp_fell_frac": float(((d_c < 0) & (d_r < 0)).double().mean()),
        "diag/chosen_logp_delta": float(d_c.mean()),
        "diag/rejected_logp_delta": float(d_r.mean()),
    }
