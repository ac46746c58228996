"""Fitting one prompt and its responses into ``max_length`` tokens.

Policy (each response is scored as prompt + response, so every one must fit with the prompt):

1. The prompt keeps its END (the question is usually last; a long system prompt or history goes
   first). A leading BOS is kept in front of the kept part. The prompt is cut to
   ``max_prompt_length`` when that is set; otherwise only as far as needed to leave room for the
   longest response, and never below ``max_length // 2`` tokens.
2. Each response keeps its START and is cut to ``max_length - len(prompt)`` tokens (a cut response
   loses its final EOS: it did not end there).
3. A row is dropped when the prompt leaves no room for any response token, or when chosen and
   rejected become identical after cutting (their difference was all beyond ``max_length``).

Every cut and drop is counted in :class:`TruncationStats`; the caller logs its ``summary()``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TruncationStats:
    """Counts of what tokenization and truncation did to a set of rows.

    Attributes:
        rows: rows seen.
        kept: rows returned.
        truncated_prompts: kept rows whose prompt was left-truncated.
        truncated_responses: responses of kept rows cut at the end (chosen, rejected, explore each count).
        dropped_no_room: rows dropped because the prompt left no room for a response token.
        dropped_identical: rows dropped because chosen == rejected after truncation.
        boundary_fallbacks: responses tokenized on their own because the tokenizer merged tokens
            across the prompt/response boundary (see :mod:`selm.data.tokenize`).
    """

    rows: int = 0
    kept: int = 0
    truncated_prompts: int = 0
    truncated_responses: int = 0
    dropped_no_room: int = 0
    dropped_identical: int = 0
    boundary_fallbacks: int = 0

    def summary(self) -> str:
        """One line for the log, e.g. ``"100 rows, 98 kept; truncated 3 prompts, 5 responses; ..."``."""
        return (f"{self.rows} rows, {self.kept} kept; truncated {self.truncated_prompts} prompts, "
                f"{self.truncated_responses} responses; dropped {self.dropped_no_room} (no room for a response), "
                f"{self.dropped_identical} (chosen == rejected after truncation); "
                f"{self.boundary_fallbacks} boundary fallbacks")


def prompt_budget(prompt_length: int, longest_response: int, max_length: int, max_prompt_length: int | None) -> int:
    """How many prompt tokens to keep (rule 1 of the module doc)."""
    if max_prompt_length is not None:
        return min(prompt_length, max_prompt_length)
    return min(prompt_length, max(max_length - longest_response, max_length // 2))


def keep_prompt_end(prompt_ids: list[int], budget: int, bos_token_id: int | None) -> list[int]:
    """The last ``budget`` tokens of the prompt, behind its leading BOS if it has one.

    Returns:
        [min(P, budget)] token ids.
    """
    if len(prompt_ids) <= budget:
        return prompt_ids
    if budget >= 2 and bos_token_id is not None and prompt_ids[0] == bos_token_id:
        return [bos_token_id] + prompt_ids[len(prompt_ids) - budget + 1:]
    return prompt_ids[len(prompt_ids) - budget:]
