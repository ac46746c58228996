"""Rollout examples: token rows padded into [N, T], the response mask, bad rollouts refused."""

import pytest
import torch

from selm.data import TokenizedRollout, pad_token_rows, response_mask


def test_rows_are_padded_with_zeros_past_their_end_and_the_mask_marks_their_tokens():
    rows = pad_token_rows([[1.0, 2.0], [3.0], [4.0, 5.0, 6.0]])
    assert rows.tolist() == [[1.0, 2.0, 0.0], [3.0, 0.0, 0.0], [4.0, 5.0, 6.0]]
    assert response_mask([2, 1, 3], 3).tolist() == [[True, True, False], [True, False, False], [True, True, True]]
    assert pad_token_rows([torch.tensor([1.5])], dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(prompt_ids=[], response_ids=[1]), "rollout 7: the prompt and the response need at least one token each"),
    (dict(prompt_ids=[1], response_ids=[]), "rollout 7: the prompt and the response need at least one token each"),
    (dict(prompt_ids=[1], response_ids=[2, 3], sampling_token_logps=[-1.0]),
     "rollout 7: 1 sampling log-probs for 2 response tokens"),
])
def test_a_bad_rollout_names_itself(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TokenizedRollout(index=7, reward=0.0, group=0, **kwargs)
