"""PPO's critics: a value model from a reward model, read at the states before each response token,
saved and restored with a round's policy or a checkpoint."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from selm.engine import collate_sequences, sequence_stats
from selm.errors import UserError
from selm.modeling.tiny import build_tiny_model
from selm.modeling.value_head import ValueHead
from selm.train.critic import ValueModel, restore_critic, save_critic, saved_critic

SEQUENCES = [([5, 6, 7], [8, 9]), ([3], [4, 10, 11, 12])]


def reward_model(seed=0):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=61, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, num_labels=1, pad_token_id=0)
    return LlamaForSequenceClassification(config).double()


def test_value_model_reads_its_own_hidden_state_before_each_response_token():
    policy = build_tiny_model(61).double()
    rm = reward_model()
    stats = sequence_stats(policy, collate_sequences(SEQUENCES, 0), value_head=ValueModel(rm))
    for i, (prompt, response) in enumerate(SEQUENCES):
        hidden = rm.model(input_ids=torch.tensor([prompt + response])).last_hidden_state[0]
        want = rm.score(hidden[len(prompt) - 1:len(prompt) + len(response) - 1]).squeeze(-1)
        torch.testing.assert_close(stats.values[i, :len(response)], want, rtol=0, atol=1e-12)


def test_critics_round_trip_through_a_folder(tmp_path):
    model = ValueModel(reward_model(1))
    save_critic(model, tmp_path / "a")
    other = ValueModel(reward_model(2))
    restore_critic(other, tmp_path / "a")
    for x, y in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(x, y)
    assert isinstance(saved_critic(tmp_path / "a", 32), ValueModel)
    head = ValueHead(32)
    torch.nn.init.normal_(head.linear.weight)
    (tmp_path / "b").mkdir()
    save_critic(head, tmp_path / "b")
    fresh = ValueHead(32)
    restore_critic(fresh, tmp_path / "b")
    assert torch.equal(fresh.linear.weight, head.linear.weight)
    assert saved_critic(tmp_path / "nothing", 32) is None


def test_a_model_without_a_one_output_score_head_is_refused():
    with pytest.raises(UserError, match="no one-output linear 'score' head"):
        ValueModel(build_tiny_model(61))
