"""The log-prob engine: (model, token batch) -> per-sequence statistics, never the full [N, T, V] logits.

    SequenceBatch / PackedSequenceBatch      padded or packed prompt+response token batches (batch.py)
    collate_sequences / pack_sequences       token id lists -> one of those batches (padding.py, packing.py)
    sequence_stats                           the chunked engine: summed or per-token log-probs, KL, entropy,
                                             values of a value head (sequence_stats.py)
    linear_token_logprobs                    the fused output layer + log-softmax (head.py)
    SequenceStatsModel                       the policy with the engine as its forward: what DDP / FSDP wrap
                                             (stats_model.py)
    score_sequences / score_tokens           many sequences, no grad, batched: sums / per token (score.py)
    FeatureProbe / pooled_features           a sparse autoencoder's codes pooled over each response (FPO;
                                             features.py); score_with_features: sums and features (score.py)
"""

from selm.engine.batch import (
                                        AnySequenceBatch,
                                        PackedSequenceBatch,
                                        SequenceBatch,
                                        SequenceStats,
)
from selm.engine.features import FeatureProbe, hidden_layers, pooled_features
from selm.engine.head import linear_token_logprobs
from selm.engine.packing import PackingLayout, check_sequences, pack_sequences
from selm.engine.padding import collate_sequences
from selm.engine.score import TokenScores, score_sequences, score_tokens, score_with_features
from selm.engine.sequence_stats import (
                                        MAX_CHUNK_LOGITS,
                                        ReferencePolicy,
                                        decoder_states,
                                        naive_sequence_logps,
                                        response_hidden_states,
                                        sequence_stats,
                                        unwrap_causal_lm,
)
from selm.engine.stats_model import SequenceStatsModel, tied_head_gradient_in_place

__all__ = [
    "MAX_CHUNK_LOGITS", "AnySequenceBatch", "FeatureProbe", "hidden_layers", "pooled_features", "score_with_features", "PackedSequenceBatch", "PackingLayout", "ReferencePolicy", "SequenceBatch",
    "SequenceStats", "SequenceStatsModel", "TokenScores", "check_sequences", "collate_sequences", "decoder_states", "linear_token_logprobs", "naive_sequence_logps",
    "pack_sequences", "response_hidden_states", "score_sequences", "score_tokens", "sequence_stats", "tied_head_gradient_in_place",
    "unwrap_causal_lm",
]
