"""selm's GRPO and RLOO against TRL 1.16's own code, on identical float64 inputs.

TRL's loss and advantage code lives inside its trainers' methods (``GRPOTrainer._compute_loss``,
``GRPOTrainer._generate_and_score_completions``, and RLOO's); the tests call those methods on a
minimal stand-in for the trainer that hands back fixed per-token log-probs and rewards instead
of running a model, so the numbers on both sides are computed from the same tensors.

Conventions that differ from TRL, and how the tests line the two up:
- selm requires the sampling policy's log-probs; TRL, when it skips that pass, uses the detached
  current ones: the tests pass them explicitly.
- TRL normalises per micro-batch and divides by the accumulation steps; selm divides a step's sum
  by step totals (``micro_batch_loss``): the same for equal-size micro-batches (``grpo``,
  ``dr_grpo``) and for TRL's default ``steps_per_generation == gradient_accumulation_steps``
  (``dapo``), which the tests use.
- TRL's entropy bonus is a token mean per micro-batch whatever the ``loss_type``; selm aggregates
  it like the policy loss: they agree for ``bnpo``, the case tested.
- TRL computes the clip fractions, and the Bessel factor n/(n − 1) of its standard deviations, in
  float32; those are compared to float32 rounding (the latter moves a scaled advantage by 1.5e-8).
- TRL zeroes the advantage of a completion no reward function scored (NaN); selm's rewards are
  finite (the judge refuses NaN earlier).
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("trl")
from trl.trainer.grpo_trainer import GRPOTrainer  # noqa: E402
from trl.trainer.rloo_trainer import RLOOTrainer  # noqa: E402

from selm.objectives import RolloutBatch, get_objective  # noqa: E402
from selm.objectives.advantages import AdvantageInputs, get_advantage_estimator  # noqa: E402
from selm.objectives.rollout import StepTotals, micro_batch_loss  # noqa: E402

F64 = torch.float64
LENGTHS = [5, 3, 6, 1, 4, 6, 2, 5]  # two micro-batches of 4 responses, T = 6
# Fractions of clipped tokens: TRL counts them in float32 (``.float()``), selm in the batch's dtype.
CLIP_METRICS = ("clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean")
# TRL's nanstd: the float32 factor n/(n − 1) is within 2⁻²⁴ relative, so the std within 2⁻²⁵ ≈ 3e-8.
BESSEL_RTOL = 3e-8


class Accelerator:
    """One process: reductions and gathers are the identity."""

    device = torch.device("cpu")
    process_index = 0
    num_processes = 1
    sync_gradients = True

    def reduce(self, tensor, reduction="sum"):
        return tensor

    def gather(self, tensor):
        return tensor

    def gather_for_metrics(self, tensor):
        return tensor


def stand_in(trainer: type, **attributes) -> SimpleNamespace:
    """A trainer without model or data: TRL's methods find here what they read of ``self``."""
    model = SimpleNamespace(training=True, is_gradient_checkpointing=False)
    base = dict(
        accelerator=Accelerator(), model=model, ref_model=SimpleNamespace(), aux_loss_enabled=False,
        use_vllm=False, vllm_importance_sampling_correction=False, _metrics=defaultdict(lambda: defaultdict(list)),
        _logs={"prompt": [], "completion": [], "rewards": defaultdict(list), "advantages": [],
               "extra": defaultdict(list), "images": []},
        _pending_extra_logs={}, _pending_metrics={}, log_multimodal=False, pad_to_multiple_of=None,
        mask_truncated_completions=False, _tokenizer=SimpleNamespace(pad_token_id=0),
    )
    base.update(attributes)
    stub = SimpleNamespace(**base)
    # TRL's methods call each other through ``self``: bind the ones the tested code reaches.
    for name in ("_compute_loss", "_generate_and_score_completions"):
        setattr(stub, name, getattr(trainer, name).__get__(stub))
    return stub


def mask_of(lengths: list[int]) -> torch.Tensor:
    """[B, T] responses of these lengths, T the longest."""
    return torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]


def token_logps(seed: int, lengths: list[int]) -> torch.Tensor:
    """[B, T] per-token log-probs in [−3, −0.05], 0 on padding (selm's RolloutBatch convention)."""
    g = torch.Generator().manual_seed(seed)
    values = -(0.05 + 2.95 * torch.rand(len(lengths), max(lengths), generator=g, dtype=F64))
    return values * mask_of(lengths)


def token_inputs(mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The ids and masks TRL's loss concatenates (their values never matter here)."""
    batch = mask.shape[0]
    return {"prompt_ids": torch.ones(batch, 2, dtype=torch.long), "prompt_mask": torch.ones(batch, 2, dtype=torch.long),
            "completion_ids": mask.long(), "completion_mask": mask.long()}


# ---- GRPO: the loss, per loss_type, over two accumulated micro-batches ----

@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_grpo_loss_gradient_and_metrics_equal_trl(loss_type):
    beta, eps_low, eps_high, entropy_coef = 0.04, 0.2, 0.28, (0.01 if loss_type == "bnpo" else 0.0)
    max_len = 8 if loss_type == "dr_grpo" else None
    mask = mask_of(LENGTHS)
    policy = token_logps(0, LENGTHS)
    # Sampling log-probs off by up to ±0.5 nats: both sides of the clip are hit.
    sampling = (policy + (torch.rand(policy.shape, generator=torch.Generator().manual_seed(1), dtype=F64) - 0.5))
    sampling = sampling * mask
    reference = token_logps(2, LENGTHS)
    advantages = torch.tensor([1.3, -0.7, 0.4, -1.9, 0.0, 2.2, -0.3, 0.8], dtype=F64)
    entropies = torch.rand(policy.shape, generator=torch.Generator().manual_seed(3), dtype=F64) * 2 * mask

    halves = [slice(0, 4), slice(4, 8)]
    trl = stand_in(GRPOTrainer, top_entropy_quantile=1.0, off_policy_mask_threshold=None,
                   importance_sampling_level="token", beta=beta, loss_type=loss_type, epsilon_low=eps_low,
                   epsilon_high=eps_high, current_gradient_accumulation_steps=2, max_completion_length=max_len,
                   _entropy_bonus_enabled=entropy_coef > 0, entropy_coef=entropy_coef, use_adaptive_entropy=False,
                   args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=2))
    objective = get_objective("grpo", beta=beta, epsilon_low=eps_low, epsilon_high=eps_high, loss_type=loss_type,
                              max_completion_length=max_len, entropy_coef=entropy_coef)
    totals = StepTotals(sequences=8, tokens=int(mask.sum()), micro_batches=2)

    trl_total, selm_total = 0.0, 0.0
    for half in halves:
        trl_logps = policy[half].clone().requires_grad_()
        trl_entropies = entropies[half].clone().requires_grad_()
        trl._get_per_token_logps_and_entropies = lambda *args, _l=trl_logps, _e=trl_entropies, **kwargs: (_l, _e, None)
        trl_loss = trl._compute_loss(None, {
            **token_inputs(mask[half]), "advantages": advantages[half], "old_per_token_logps": sampling[half],
            "ref_per_token_logps": reference[half], "num_items_in_batch": mask.sum()})
        trl_loss.backward()

        batch = RolloutBatch(policy_token_logps=policy[half].clone().requires_grad_(), response_mask=mask[half],
                             sampling_token_logps=sampling[half], reference_token_logps=reference[half],
                             advantages=advantages[half, None] * mask[half],
                             token_entropies=entropies[half].clone().requires_grad_())
        out = objective(batch)
        selm_loss = micro_batch_loss(out.losses, batch.response_mask, objective.loss_normalizer, totals)
        selm_loss.backward()

        torch.testing.assert_close(selm_loss, trl_loss, rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(batch.policy_token_logps.grad, trl_logps.grad, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(batch.token_entropies.grad, trl_entropies.grad, rtol=1e-12, atol=1e-15)
        for name in ("kl", "entropy"):
            assert out.metrics[name].item() == pytest.approx(trl._metrics["train"][name][-1], rel=1e-12), name
        for name in CLIP_METRICS:
            assert out.metrics[name].item() == pytest.approx(trl._metrics["train"][name][-1], rel=1e-6), name
        trl_total += trl_loss.item()
        selm_total += selm_loss.item()
    assert selm_total == pytest.approx(trl_total, rel=1e-13)
    # Both sides of the clip were exercised.
    assert max(trl._metrics["train"]["clip_ratio/low_mean"]) > 0 and max(trl._metrics["train"]["clip_ratio/high_mean"]) > 0


# ---- GRPO: the advantages, per scale_rewards ----

GROUP_REWARDS = [[0.9, 0.1, 0.5, 0.5], [1.0, 1.0, 1.0, 1.0], [-2.0, 3.0, 0.25, 7.5]]


def trl_scoring(trainer: type, rewards: torch.Tensor, lengths: list[int], policy: torch.Tensor,
                reference: torch.Tensor | None, **attributes) -> dict[str, torch.Tensor]:
    """TRL's ``_generate_and_score_completions`` on fixed completions, log-probs and rewards."""
    def generate(prompts):
        ids = [[7] * n for n in lengths]
        if trainer is GRPOTrainer:
            return [[1, 2]] * len(prompts), ids, None, ["c"] * len(prompts), None, {}, None, None
        return [[1, 2]] * len(prompts), ids, ["c"] * len(prompts)

    stub = stand_in(trainer, environment_factories=None, tools=None, environments=None, num_iterations=1,
                    reward_func_names=["judge"], reward_weights=torch.ones(1, dtype=F64), **attributes,
                    args=SimpleNamespace(per_device_train_batch_size=len(lengths), gradient_checkpointing_kwargs=None,
                                         steps_per_generation=1, gradient_accumulation_steps=1))
    stub._generate = generate
    stub._calculate_rewards = lambda *args: rewards[:, None].clone()
    stub._get_per_token_logps_and_entropies = (
        lambda model, *args, **kwargs: (reference if model is stub.ref_model else policy, None, None))
    return stub._generate_and_score_completions([{"prompt": "p"}] * len(lengths))


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
def test_grpo_advantages_equal_trl(scale_rewards):
    rewards = torch.tensor(GROUP_REWARDS, dtype=F64).flatten()
    lengths = [3, 1, 2, 3, 2, 2, 1, 3, 3, 2, 1, 1]
    trl = trl_scoring(GRPOTrainer, rewards, lengths, token_logps(4, lengths), None, beta=0.0, num_generations=4,
                      scale_rewards=scale_rewards, multi_objective_aggregation="sum_then_normalize")
    inputs = AdvantageInputs(rewards=rewards, group_ids=torch.arange(3).repeat_interleave(4),
                             response_mask=mask_of(lengths))
    name = "dr_grpo" if scale_rewards == "none" else "grpo"
    hyperparameters = {} if scale_rewards == "none" else {"scale_rewards": scale_rewards}
    ours = get_advantage_estimator(name, **hyperparameters)(inputs).advantages
    # TRL's nanstd forms the Bessel factor n/(n − 1) from integer counts in float32 (4/3 is off by
    # 3e-8), so its scaled advantages carry a relative error of 1.5e-8; unscaled ones are exact.
    rtol = 1e-13 if scale_rewards == "none" else BESSEL_RTOL
    torch.testing.assert_close(ours[:, 0], trl["advantages"], rtol=rtol, atol=1e-15)
    torch.testing.assert_close(ours, trl["advantages"][:, None] * inputs.mask, rtol=rtol, atol=1e-15)
    assert ours[4:8].abs().max() == 0  # the group of equal rewards


# ---- RLOO: the advantages (KL in the reward) and the sequence-level loss ----

@pytest.mark.parametrize("normalize", [False, True])
def test_rloo_advantages_with_kl_in_the_reward_equal_trl(normalize):
    rewards = torch.tensor([0.9, 0.1, 0.5, -0.3, 2.0, 1.0, 1.5, 0.0], dtype=F64)
    beta = 0.05
    sampling, reference = token_logps(5, LENGTHS), token_logps(6, LENGTHS)
    trl = trl_scoring(RLOOTrainer, rewards, LENGTHS, sampling, reference, beta=beta, num_generations=4,
                      reward_clip_range=None, normalize_advantages=normalize)
    mask = mask_of(LENGTHS)
    inputs = AdvantageInputs(rewards=rewards, group_ids=torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), response_mask=mask,
                             kl=sampling - reference)
    ours = get_advantage_estimator("rloo", kl_coef=beta, normalize=normalize)(inputs).advantages
    # Normalising divides by TRL's nanstd, with its float32 Bessel factor (see the GRPO test).
    torch.testing.assert_close(ours[:, 0], trl["advantages"], rtol=BESSEL_RTOL if normalize else 1e-13, atol=1e-15)
    torch.testing.assert_close(trl["old_logps"], (sampling * mask).sum(-1), rtol=0, atol=0)


def test_rloo_loss_gradient_and_metrics_equal_trl():
    mask = mask_of(LENGTHS)
    policy = token_logps(7, LENGTHS)
    # Sequence ratios exp(±0.4): outside [0.8, 1.2] for some responses, inside for others.
    shifts = torch.tensor([0.4, -0.4, 0.05, -0.3, 0.3, 0.1, -0.05, 0.25], dtype=F64)
    sampling = (policy - shifts[:, None] / torch.tensor(LENGTHS, dtype=F64)[:, None]) * mask
    advantages = torch.tensor([1.0, -0.5, 0.3, -1.2, 0.7, -0.1, 0.9, -0.6], dtype=F64)

    trl_logps = policy.clone().requires_grad_()
    trl = stand_in(RLOOTrainer, epsilon_low=0.2, epsilon_high=0.2)
    trl._get_per_token_logps_and_entropies = lambda *args, **kwargs: (trl_logps, torch.zeros_like(policy), None)
    trl_loss = trl._compute_loss(None, {**token_inputs(mask), "old_logps": (sampling * mask).sum(1),
                                        "advantages": advantages})
    trl_loss.backward()

    batch = RolloutBatch(policy_token_logps=policy.clone().requires_grad_(), response_mask=mask,
                         sampling_token_logps=sampling, advantages=advantages[:, None] * mask)
    objective = get_objective("rloo")
    out = objective(batch)
    loss = micro_batch_loss(out.losses, mask, objective.loss_normalizer, StepTotals(8, int(mask.sum()), 1))
    loss.backward()
    torch.testing.assert_close(loss, trl_loss, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(batch.policy_token_logps.grad, trl_logps.grad, rtol=1e-12, atol=1e-15)
    for name in CLIP_METRICS:
        assert out.metrics[name].item() == pytest.approx(trl._metrics["train"][name][-1], rel=1e-6), name
    assert 0 < out.metrics["clip_ratio/region_mean"].item() < 1
