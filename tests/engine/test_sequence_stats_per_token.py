"""Per-token engine outputs (the rollout objectives' input) against a naive full-logits pass in float64."""

import torch

from selm.engine import SequenceStatsModel, collate_sequences, pack_sequences, sequence_stats
from selm.modeling.tiny import build_tiny_model

VOCAB = 97


class LinearCritic(torch.nn.Linear):
    """A critic as the engine calls it, ``critic(hidden, batch)``, reading only the hidden states."""

    def forward(self, hidden, batch=None):
        return super().forward(hidden)

SEQUENCES = [([5, 6, 7], [8, 9]), ([3], [4, 10, 11, 12]), ([13, 14], [15])]


def naive_token_stats(model, sequences):
    """[N, T] log-probs and entropies of each response token, one sequence at a time, full logits."""
    width = max(len(r) for _, r in sequences)
    logps = torch.zeros(len(sequences), width, dtype=torch.float64)
    entropies = torch.zeros_like(logps)
    for i, (prompt, response) in enumerate(sequences):
        ids = torch.tensor([prompt + response])
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
        for t, token in enumerate(response):
            row = logp[len(prompt) + t - 1]
            logps[i, t] = row[token]
            entropies[i, t] = -(row.exp() * row).sum()
    return logps, entropies


def test_per_token_logps_and_entropies_match_full_logits_padded_and_packed():
    torch.manual_seed(0)
    model = build_tiny_model(vocab_size=VOCAB).double()
    want_logps, want_entropies = naive_token_stats(model, SEQUENCES)
    for batch in (collate_sequences(SEQUENCES, pad_token_id=0), pack_sequences(SEQUENCES, pad_token_id=0)):
        for chunk_size in (1, 1024):
            stats = sequence_stats(model, batch, chunk_size=chunk_size, per_token=True, with_entropy=True)
            torch.testing.assert_close(stats.token_logps, want_logps, rtol=0, atol=1e-12)
            torch.testing.assert_close(stats.token_entropies, want_entropies, rtol=0, atol=1e-12)
            # The per-token values sum to the per-sequence ones, padding contributes nothing.
            torch.testing.assert_close(stats.token_logps.sum(-1), stats.logps, rtol=0, atol=1e-12)


def test_termination_logps_are_the_eos_column_of_the_full_log_softmax():
    # The EOS log-prob at every response position, whatever token was sampled there (GFlowNet
    # flows): column t is log π(EOS | x, y_<t), read from the same row as the token's log-prob.
    eos = 2
    torch.manual_seed(0)
    model = build_tiny_model(vocab_size=VOCAB).double()
    want = torch.zeros(len(SEQUENCES), max(len(r) for _, r in SEQUENCES), dtype=torch.float64)
    for i, (prompt, response) in enumerate(SEQUENCES):
        logp = torch.log_softmax(model(input_ids=torch.tensor([prompt + response])).logits[0].double(), dim=-1)
        want[i, :len(response)] = logp[len(prompt) - 1:len(prompt) + len(response) - 1, eos]
    engine = SequenceStatsModel(model, chunk_size=2)
    for batch in (collate_sequences(SEQUENCES, pad_token_id=0), pack_sequences(SEQUENCES, pad_token_id=0)):
        # Chunks of 1 and 2 positions cut responses apart; the float64 log-softmax rounds at ~1e-16.
        for stats in (sequence_stats(model, batch, chunk_size=1, termination_token_id=eos),
                      engine(batch, per_token=True, termination_token_id=eos)):
            torch.testing.assert_close(stats.termination_token_logps, want, rtol=0, atol=1e-12)
    stats = sequence_stats(model, collate_sequences(SEQUENCES, pad_token_id=0), termination_token_id=eos)
    stats.termination_token_logps.sum().backward()
    assert model.lm_head.weight.grad[eos].abs().sum() > 0


def test_value_head_reads_the_hidden_state_that_predicts_each_token():
    torch.manual_seed(0)
    model = build_tiny_model(vocab_size=VOCAB).double()
    head = LinearCritic(model.config.hidden_size, 1, dtype=torch.float64)
    stats = sequence_stats(model, collate_sequences(SEQUENCES, pad_token_id=0), value_head=head)
    for i, (prompt, response) in enumerate(SEQUENCES):
        hidden = model.model(input_ids=torch.tensor([prompt + response])).last_hidden_state[0]
        want = head(hidden[len(prompt) - 1:len(prompt) + len(response) - 1]).squeeze(-1)
        torch.testing.assert_close(stats.values[i, :len(response)], want, rtol=0, atol=1e-12)
        assert bool((stats.values[i, len(response):] == 0).all())


def test_per_token_outputs_carry_gradients():
    torch.manual_seed(0)
    model = build_tiny_model(vocab_size=VOCAB)
    head = LinearCritic(model.config.hidden_size, 1)
    stats = sequence_stats(model, collate_sequences(SEQUENCES, pad_token_id=0), per_token=True, value_head=head)
    (stats.token_logps.sum() + stats.values.sum()).backward()
    assert head.weight.grad is not None and model.lm_head.weight.grad is not None
