"""The log-prob engine: (model, token batch) -> per-sequence statistics, never the full [N, T, V] logits.

    SequenceBatch / PackedSequenceBatch      padded or packed prompt+response token batches (batch.py)
    collate_sequences / pack_sequences       token id lists -> one of those batches (padding.py, packing.py)
    sequence_stats                           the chunked engine: summed log-probs, KL, entropy (sequence_stats.py)
    linear_token_logprobs                    the fused output layer + log-softmax (head.py)
    score_sequences                          many sequences, no grad, batched (score.py)
"""

from selm.engine.batch import (
                                        AnySequenceBatch,
                                        PackedSequenceBatch,
                                        SequenceBatch,
                                        SequenceStats,
)
from selm.engine.head import linear_token_logprobs
from selm.engine.packing import PackingLayout, check_sequences, pack_sequences
from selm.engine.padding import collate_sequences
from selm.engine.score import score_sequences
from selm.engine.sequence_stats import (
                                        MAX_CHUNK_LOGITS,
                                        ReferencePolicy,
                                        naive_sequence_logps,
                                        response_hidden_states,
                                        sequence_stats,
                                        unwrap_causal_lm,
)

__all__ = [
    "MAX_CHUNK_LOGITS", "AnySequenceBatch", "PackedSequenceBatch", "PackingLayout", "ReferencePolicy", "SequenceBatch",
    "SequenceStats", "check_sequences", "collate_sequences", "linear_token_logprobs", "naive_sequence_logps",
    "pack_sequences", "response_hidden_states", "score_sequences", "sequence_stats", "unwrap_causal_lm",
]
