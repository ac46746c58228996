"""The rollout trainer: exact loss normalisation over any micro-batch split, the once-per-round
tensors (sampling / reference log-probs, advantages, the critic's values), checkpoints with a critic."""

from __future__ import annotations

import pytest
import torch

from selm.data import TokenizedRollout
from selm.engine import ReferencePolicy
from selm.modeling.tiny import build_tiny_model
from selm.modeling.value_head import ValueHead
from selm.objectives import get_objective
from selm.objectives.advantages import get_advantage_estimator
from selm.train.config import TrainingArguments
from selm.train.rollout_trainer import RolloutTrainer
from selm.train.trainer import latest_checkpoint

VOCAB = 53
# Two prompts, two responses each, of different lengths (the normalisers differ only then).
ROLLOUTS = [
    TokenizedRollout(0, [5, 6], [7, 8, 9], 1.0, group=0),
    TokenizedRollout(1, [5, 6], [10], 0.0, group=0),
    TokenizedRollout(2, [11], [12, 13], 0.5, group=1),
    TokenizedRollout(3, [11], [14, 15, 16, 17], 2.0, group=1),
]


def args(**kw):
    base = dict(learning_rate=1e-3, per_device_train_batch_size=4, warmup_ratio=0.0, lr_scheduler_type="constant",
                logging_steps=1, max_grad_norm=None, seed=0, per_device_eval_batch_size=3)
    base.update(kw)
    return TrainingArguments(**base)


def model64():
    return build_tiny_model(VOCAB).double()


def trainer_for(model, objective, estimator, rollouts=ROLLOUTS, reference=None, value_head=None, tmp_path=None,
                critic_learning_rate=None, **kw):
    return RolloutTrainer(model, objective, args(**kw), rollouts, pad_token_id=0, estimator=estimator,
                          reference=reference, value_head=value_head, progress=False,
                          critic_learning_rate=critic_learning_rate,
                          output_dir=tmp_path / "out" if tmp_path else None)


def hand_loss(model, loss_type):
    """GRPO's loss at ρ = 1 (one update, sampling = policy) written out from full logits, float64."""
    rewards = torch.tensor([r.reward for r in ROLLOUTS], dtype=torch.float64)
    advantages = torch.empty(4, dtype=torch.float64)
    for group in (0, 1):
        pick = torch.tensor([r.group == group for r in ROLLOUTS])
        g = rewards[pick]
        advantages[pick] = (g - g.mean()) / (g.std() + 1e-4)
    per_response, lengths = [], []
    for r, a in zip(ROLLOUTS, advantages):
        ids = torch.tensor([r.prompt_ids + r.response_ids])
        logp = torch.log_softmax(model(input_ids=ids).logits[0], -1)
        tokens = torch.stack([logp[len(r.prompt_ids) + t - 1, y] for t, y in enumerate(r.response_ids)])
        # -ρ·A with ρ = exp(logπ − sg(logπ)) = 1 in value, ∇ρ = ∇logπ.
        token_losses = -torch.exp(tokens - tokens.detach()) * a
        per_response.append(token_losses.sum())
        lengths.append(len(r.response_ids))
    sums, lengths = torch.stack(per_response), torch.tensor(lengths, dtype=torch.float64)
    if loss_type == "grpo":
        return (sums / lengths).mean()
    if loss_type == "dr_grpo":
        return (sums / 5).mean()
    return sums.sum() / lengths.sum()  # dapo


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
@pytest.mark.parametrize("micro,accumulation", [(4, 1), (1, 4), (3, 2)])
def test_accumulated_gradient_equals_the_hand_written_loss_for_any_split(loss_type, micro, accumulation):
    model = model64()
    objective = get_objective("grpo", beta=0.0, loss_type=loss_type,
                              max_completion_length=5 if loss_type == "dr_grpo" else None)
    trainer = trainer_for(model, objective, get_advantage_estimator("grpo"), per_device_train_batch_size=micro,
                          gradient_accumulation_steps=accumulation)
    trainer.prepare()
    n_global, micro_batches = trainer.windows(0)[0]
    assert n_global == 4
    assert trainer.accumulate(micro_batches, n_global).finite
    got = [p.grad for p in model.parameters()]
    independent = model64()
    expected = torch.autograd.grad(hand_loss(independent, loss_type), list(independent.parameters()))
    for g, e in zip(got, expected):
        # The fixed per-token tensors are stored in float32 (2^-24 relative): ρ = exp(logπ − logπ_old)
        # is then 1 + O(2^-24·|logπ|) with |logπ| < 8 here, and the advantages carry 2^-24 too, so
        # the gradient is within ~1e-6 of its scale; the float64 rest only reorders sums.
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-6 * float(e.abs().max()))


def test_recorded_sampling_logps_are_used_and_missing_ones_recomputed():
    model = model64()
    recomputed = trainer_for(model, get_objective("grpo", beta=0.0), get_advantage_estimator("grpo"))
    recomputed.prepare()
    fixed = recomputed.fixed["sampling_token_logps"]
    # The engine's per-token log-probs of the round-start policy; 0 past each response's end.
    for row, r in zip(fixed, ROLLOUTS):
        ids = torch.tensor([r.prompt_ids + r.response_ids])
        logp = torch.log_softmax(model(input_ids=ids).logits[0], -1)
        want = torch.stack([logp[len(r.prompt_ids) + t - 1, y] for t, y in enumerate(r.response_ids)])
        torch.testing.assert_close(row[:len(want)].double(), want.detach(), rtol=0, atol=1e-6)  # stored float32
        assert bool((row[len(want):] == 0).all())
    recorded = [TokenizedRollout(r.index, r.prompt_ids, r.response_ids, r.reward, r.group,
                                 sampling_token_logps=[-1.0] * len(r.response_ids)) for r in ROLLOUTS]
    trainer = trainer_for(model, get_objective("grpo", beta=0.0), get_advantage_estimator("grpo"), rollouts=recorded)
    trainer.prepare()
    mask = trainer.fixed["sampling_token_logps"] != 0
    assert bool((trainer.fixed["sampling_token_logps"][mask] == -1.0).all())
    assert mask.sum(-1).tolist() == [3, 1, 2, 4]


def test_kl_in_the_reward_reads_the_reference_once_and_rloo_advantages_sum_to_zero():
    model = model64()
    reference = ReferencePolicy(model64().requires_grad_(False))
    estimator = get_advantage_estimator("rloo", kl_coef=0.1)
    trainer = trainer_for(model, get_objective("rloo"), estimator, reference=reference)
    trainer.prepare()
    assert "reference_token_logps" in trainer.fixed
    # Same weights: the KL is 0 up to float32 storage, so the advantages are the rewards' leave-one-out.
    first = trainer.fixed["advantages"][:, 0]
    torch.testing.assert_close(first, torch.tensor([1.0, -1.0, -1.5, 1.5]), rtol=0, atol=1e-5)
    assert trainer.rollout_metrics["rollout/reward"] == pytest.approx(0.875)


def test_missing_reference_or_critic_is_one_clear_error():
    from selm.errors import UserError

    with pytest.raises(UserError, match="needs a reference model"):
        trainer_for(model64(), get_objective("grpo", beta=0.04), get_advantage_estimator("grpo"))
    with pytest.raises(UserError, match="needs a value head"):
        trainer_for(model64(), get_objective("ppo"), get_advantage_estimator("gae", kl_coef=0.0))
    with pytest.raises(UserError, match="trains on pairs"):
        trainer_for(model64(), get_objective("dpo"), get_advantage_estimator("grpo"))


def test_ppo_trains_the_critic_at_its_own_rate_and_checkpoints_it(tmp_path):
    torch.manual_seed(0)
    model = build_tiny_model(VOCAB)
    head = ValueHead(model.config.hidden_size)
    trainer = trainer_for(model, get_objective("ppo"), get_advantage_estimator("gae", kl_coef=0.0, whiten=False, lam=1.0),
                          value_head=head, tmp_path=tmp_path, critic_learning_rate=1e-2, max_steps=2, save_steps=1,
                          save_total_limit=5)
    trainer.train()
    # A zero-initialised critic: GAE with λ = γ = 1 and V = 0 gives the reward-to-go, the reward on every token.
    returns = trainer.fixed["returns"]
    for row, r in zip(returns, ROLLOUTS):
        torch.testing.assert_close(row[:len(r.response_ids)], torch.full((len(r.response_ids),), r.reward))
    groups = trainer.optimizer.param_groups
    assert [g["lr"] for g in groups] == [1e-3, 1e-3, 1e-2]
    assert float(head.linear.weight.abs().sum()) > 0
    # Resuming at step 1 restores the critic as it was then.
    checkpoint = tmp_path / "out" / "checkpoint-1"
    assert (checkpoint / "value_head.safetensors").is_file() and latest_checkpoint(tmp_path / "out").name == "checkpoint-1"
    fresh_head = ValueHead(model.config.hidden_size)
    again = trainer_for(build_tiny_model(VOCAB), get_objective("ppo"),
                        get_advantage_estimator("gae", kl_coef=0.0, whiten=False, lam=1.0), value_head=fresh_head,
                        tmp_path=tmp_path, critic_learning_rate=1e-2, max_steps=2)
    again.load_checkpoint(checkpoint)
    assert again.global_step == 1 and float(fresh_head.linear.weight.abs().sum()) > 0


def test_an_entropy_bonus_reads_per_token_entropies_from_the_engine():
    model = model64()
    trainer = trainer_for(model, get_objective("grpo", beta=0.0, entropy_coef=0.01), get_advantage_estimator("grpo"))
    trainer.prepare()
    batch = trainer.rollout_batch([0, 3], train=False)
    for row, r in zip(batch.token_entropies, (ROLLOUTS[0], ROLLOUTS[3])):
        logp = torch.log_softmax(model(input_ids=torch.tensor([r.prompt_ids + r.response_ids])).logits[0], -1)
        want = torch.stack([-(logp[len(r.prompt_ids) + t - 1].exp() * logp[len(r.prompt_ids) + t - 1]).sum()
                            for t in range(len(r.response_ids))])
        torch.testing.assert_close(row[:len(want)], want.detach(), rtol=0, atol=1e-10)
    assert "entropy" in trainer.objective(batch).metrics


def test_fl_gfn_reads_eos_logps_from_the_engine_and_the_judged_prefix_rewards():
    eos = 2
    rollouts = [TokenizedRollout(r.index, r.prompt_ids, r.response_ids, r.reward, r.group,
                                 prefix_rewards=[0.1 * (r.index + t) for t in range(len(r.response_ids))])
                for r in ROLLOUTS]
    model = model64()
    trainer = RolloutTrainer(model, get_objective("fl_gfn"), args(), rollouts, pad_token_id=0,
                             estimator=get_advantage_estimator("grpo"), termination_token_id=eos, progress=False)
    trainer.prepare()
    assert "advantages" not in trainer.fixed  # the objective reads none: no estimator run
    batch = trainer.rollout_batch([3, 1], train=False)
    for row, rewards, r in zip(batch.termination_token_logps, batch.prefix_rewards, (rollouts[3], rollouts[1])):
        n = len(r.response_ids)
        logp = torch.log_softmax(model(input_ids=torch.tensor([r.prompt_ids + r.response_ids])).logits[0], -1)
        want = logp[len(r.prompt_ids) - 1:len(r.prompt_ids) + n - 1, eos]
        torch.testing.assert_close(row[:n], want.detach(), rtol=0, atol=1e-12)
        # float32 storage of the judge's values (as the other fixed tensors), then the batch's dtype.
        torch.testing.assert_close(rewards[:n], torch.tensor(r.prefix_rewards, dtype=torch.float64), rtol=0, atol=1e-7)
    from selm.errors import UserError

    with pytest.raises(UserError, match="reads the termination \\(EOS\\) log-probs: the tokenizer has no EOS"):
        RolloutTrainer(model, get_objective("fl_gfn"), args(), rollouts, pad_token_id=0,
                       estimator=get_advantage_estimator("grpo"), progress=False)
    with pytest.raises(UserError, match="needs the judge's reward of every prefix"):
        RolloutTrainer(model, get_objective("fl_gfn"), args(), ROLLOUTS, pad_token_id=0,
                       estimator=get_advantage_estimator("grpo"), termination_token_id=eos, progress=False)
