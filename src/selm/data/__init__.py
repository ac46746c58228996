"""Data: loading and validating preference and prompt data, tokenization, collation.

    load_rows / load_preference_data / load_prompts   files or datasets -> validated rows
    tokenize_prompt / tokenize_response               one exact prompt/response boundary
    tokenize_preference_pairs                         pairs -> TokenizedPair, truncated, counted
    collate_preference_rows / RowLayout               pairs -> one engine batch, rows in a named layout
"""

from selm.data.batching import length_grouped_batches
from selm.data.collate import RowLayout, collate_preference_batch, collate_preference_rows
from selm.data.loading import RowTable, load_rows, load_table
from selm.data.messages import ROLES, Message, Turns
from selm.data.preference import PreferenceDataset, PreferencePair, load_preference_data
from selm.data.prompts import load_prompts
from selm.data.rollouts import TokenizedRollout, pad_token_rows, response_mask
from selm.data.tokenize import (
                                EncodedPrompt,
                                EncodedResponse,
                                adds_bos,
                                encode_prompt,
                                encode_response,
                                render_prompt,
                                tokenize_prompt,
                                tokenize_response,
)
from selm.data.tokenized_pairs import TokenizedPair, tokenize_preference_pairs
from selm.data.truncation import TruncationStats

__all__ = [
    "ROLES", "EncodedPrompt", "EncodedResponse", "Message", "PreferenceDataset", "PreferencePair", "RowLayout",
    "RowTable", "TokenizedPair", "TokenizedRollout", "TruncationStats", "Turns", "adds_bos", "collate_preference_batch",
    "collate_preference_rows",
    "encode_prompt", "encode_response", "length_grouped_batches", "load_preference_data", "load_prompts",
    "load_rows", "load_table", "pad_token_rows", "render_prompt", "response_mask", "tokenize_preference_pairs", "tokenize_prompt",
    "tokenize_response",
]
