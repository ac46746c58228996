"""Token log-probs through the output layer, with a hand-written backward that allocates nothing per chunk.

For a linear output layer W [V, H] and hidden states h [M, H], the log-prob of target y_i is

    z_i = W h_i  (optionally z = c·tanh(z / c), Gemma-2's final logit soft-capping)
    log p_i = z_i[y_i] − logsumexp(z_i)

and, for an upstream gradient g_i = ∂L/∂log p_i,

    ∂L/∂z_i = g_i · (onehot(y_i) − softmax(z_i))      [V] per position
    ∂L/∂h_i = W^T ∂L/∂z_i,     ∂L/∂W = Σ_i ∂L/∂z_i h_i^T.

Autograd with a checkpointed chunk loop builds ∂L/∂W as a fresh [V, H] tensor for every chunk and
adds them up: with a 262k vocabulary that is a 671 MB allocation (page faults included) and a
671 MB add per chunk of 32 positions, plus a second [V, H] buffer alive at the peak. Here the
backward recomputes one chunk's [c, V] logits at a time and accumulates ∂L/∂W into one buffer
in place (``addmm_``), so the extra memory is one [V, H] gradient and one [c, V] block.
The forward keeps only h, the targets and the per-position logsumexp ([M]).

With tied input and output embeddings the same [V, H] weight also gets the embedding's gradient,
and autograd sums the two contributions out of place: a third [V, H] buffer at the peak (671 MB
for Gemma 3). ``accumulate_grad=True`` adds ∂L/∂W straight into ``weight.grad`` instead (the
embedding then runs with ``sparse=True``, whose [M, H] gradient is added into it in place), so the
weight's gradient is the only [V, H] buffer. It is for ``loss.backward()`` only: a
``torch.autograd.grad`` call would not see the head's part.
"""

from __future__ import annotations

import torch


def _logits(hidden: torch.Tensor, weight: torch.Tensor, softcap: float | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[c, V] (soft-capped) logits in at least float32, and tanh(z/c) when soft-capping (for its derivative)."""
    z = hidden @ weight.T
    z = z.to(_compute_dtype(z.dtype))
    if not softcap:
        return z, None
    t = torch.tanh(z / softcap)
    return t * softcap, t


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32 for the log-softmax; a float64 model (the tests' reference) stays float64."""
    return torch.promote_types(dtype, torch.float32)


class _LinearTokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                softcap: float | None, chunk_size: int, accumulate_grad: bool) -> torch.Tensor:
        m = hidden.shape[0]
        dtype = _compute_dtype(weight.dtype)
        token_logps = torch.empty(m, dtype=dtype, device=hidden.device)
        lse = torch.empty(m, dtype=dtype, device=hidden.device)
        for start in range(0, m, chunk_size):
            end = min(start + chunk_size, m)
            z, _ = _logits(hidden[start:end], weight, softcap)
            lse[start:end] = torch.logsumexp(z, dim=-1)
            token_logps[start:end] = z.gather(1, targets[start:end, None]).squeeze(1) - lse[start:end]
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.softcap, ctx.chunk_size, ctx.accumulate_grad = softcap, chunk_size, accumulate_grad
        return token_logps

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        hidden, weight, targets, lse = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if need_h else None
        # Accumulated in at least float32 whatever the weight dtype: many chunks add into it.
        acc_dtype = _compute_dtype(weight.dtype)
        into_grad = need_w and ctx.accumulate_grad and weight.grad is not None and weight.grad.dtype == acc_dtype
        if into_grad:
            grad_w = weight.grad
        elif need_w:
            grad_w = torch.zeros(weight.shape, dtype=acc_dtype, device=weight.device)
        else:
            grad_w = None
        grad_out = grad_out.to(acc_dtype)
        for start in range(0, hidden.shape[0], ctx.chunk_size):
            end = min(start + ctx.chunk_size, hidden.shape[0])
            g = grad_out[start:end, None]
            z, t = _logits(hidden[start:end], weight, ctx.softcap)
            # dz = g · (onehot(y) − softmax(z)), built in z's buffer.
            dz = z.sub_(lse[start:end, None]).exp_().mul_(-g)
            dz.scatter_add_(1, targets[start:end, None], g)
            if t is not None:
                dz.mul_(1 - t * t)
            if need_h:
                torch.matmul(dz.to(weight.dtype), weight, out=grad_h[start:end])
            if need_w:
                grad_w.addmm_(dz.T.to(acc_dtype), hidden[start:end].to(acc_dtype))
        if grad_w is not None and grad_w.dtype != weight.dtype:
            grad_w = grad_w.to(weight.dtype)
        if need_w and ctx.accumulate_grad:
            if weight.grad is None:
                weight.grad = grad_w
            elif not into_grad:
                weight.grad.add_(grad_w)
            return grad_h, None, None, None, None, None
        return grad_h, grad_w, None, None, None, None


def linear_token_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                          softcap: float | None = None, chunk_size: int = 32,
                          accumulate_grad: bool = False) -> torch.Tensor:
    """log softmax(W h_i)[y_i] for every position, without a [M, V] tensor in forward or backward.

    Args:
        hidden: [M, H] hidden states (one per scored position).
        weight: [V, H] output-layer weight (no bias).
        targets: [M] long, the token whose log-prob is taken at each position.
        softcap: logit soft-capping constant c (z → c·tanh(z/c)), or None.
        chunk_size: positions per [chunk_size, V] block of logits.
        accumulate_grad: add ∂L/∂W into ``weight.grad`` during ``backward()`` instead of returning
            it through autograd (see the module docstring; ``weight`` must be a leaf).

    Returns:
        [M] log-probs (nats) in float32 (float64 for a float64 model); differentiable in ``hidden`` and ``weight``.
    """
    return _LinearTokenLogprobs.apply(hidden, weight, targets, softcap, max(1, int(chunk_size)), accumulate_grad)
