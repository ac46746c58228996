"""The policy as a module whose ``forward`` is the log-prob engine: what DDP / FSDP wrap and shard."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from selm.engine.batch import AnySequenceBatch, SequenceStats
from selm.engine.features import FeatureProbe
from selm.engine.sequence_stats import ReferencePolicy, sequence_stats, unwrap_causal_lm


class SequenceStatsModel(torch.nn.Module):
    """The policy with the chunked log-prob engine as its ``forward``.

    DDP arms its gradient all-reduce in ``forward``, and FSDP gathers the root's parameters (the
    embedding, the final norm, the output layer) there: calling the engine on the bare policy would
    bypass the wrapper and silently train each process on its own shard, or read sharded weights.
    Preparing or sharding this module instead routes every forward through it, the no-grad ones
    too (``selm.engine.score_sequences`` calls it as it would a bare model).
    """

    def __init__(self, policy: torch.nn.Module, chunk_size: int, value_head: torch.nn.Module | None = None):
        super().__init__()
        self.policy = policy
        self.chunk_size = chunk_size
        self.head_grad_into_param = False
        if value_head is not None:
            self.value_head = value_head

    def forward(self, batch: AnySequenceBatch, reference: ReferencePolicy | None = None,
                ratio_clip: float | None = None, per_token: bool = False, with_entropy: bool = False,
                with_values: bool = False, chunk_size: int | None = None,
                value_head: torch.nn.Module | None = None, termination_token_id: int | None = None,
                features: FeatureProbe | None = None) -> SequenceStats:
        """``sequence_stats(policy, batch, ...)``; ``with_values`` reads this module's critic,
        ``value_head`` another one (a frozen round-start copy)."""
        critic = value_head if value_head is not None else (self.value_head if with_values else None)
        return sequence_stats(self.policy, batch, chunk_size=chunk_size or self.chunk_size, reference=reference,
                              ratio_clip=ratio_clip, head_grad_into_param=self.head_grad_into_param,
                              per_token=per_token, with_entropy=with_entropy, value_head=critic,
                              termination_token_id=termination_token_id, features=features)

    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """The policy's LoRA adapters off (PEFT's context), so this module scores as π_ref."""
        with self.policy.disable_adapter():
            yield


@contextlib.contextmanager
def tied_head_gradient_in_place(model: SequenceStatsModel, distributed_type: str) -> Any:
    """While training, give a tied output layer's weight one [V, H] gradient buffer, not three.

    With tied embeddings autograd sums the head's and the embedding's dense [V, H] gradients out
    of place (671 MB each for Gemma 3). Here the head adds its gradient straight into ``.grad``
    and the embedding runs with ``sparse=True`` (its [M, H] gradient is added in place). Off under
    FSDP / DeepSpeed, whose sharded parameters own ``.grad``; DDP sees the same dense ``.grad`` at
    its hook (the flag is set after wrapping, so DDP does not expect a sparse gradient).
    """
    lm = unwrap_causal_lm(model.policy)
    emb, head = lm.get_input_embeddings(), lm.get_output_embeddings()
    tied = (isinstance(emb, torch.nn.Embedding) and type(head) is torch.nn.Linear and head.bias is None
            and emb.weight is head.weight and emb.weight.requires_grad and emb.weight.is_leaf)
    if not tied or distributed_type not in ("NO", "MULTI_CPU", "MULTI_GPU"):
        yield
        return
    was_sparse = emb.sparse
    emb.sparse, model.head_grad_into_param = True, True
    try:
        yield
    finally:
        emb.sparse, model.head_grad_into_param = was_sparse, False
