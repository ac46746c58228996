"""The rollout trainer: RL objectives (GRPO, RLOO, PPO, ...) on sampled responses with their rewards.

One round's rollouts are fixed before the first update. ``prepare`` makes, once, everything the
update epochs read but do not change: the sampling policy's per-token log-probs (recorded by the
sampler when it ran these weights, else one no-grad pass of the round-start policy), the
reference's (one no-grad pass), the critic's values at the round start (PPO), and the advantages
of the configured estimator (where the objective reads them), and the judge's prefix rewards as
[N, T] (GFlowNet fine-tuning). Each micro-batch then runs one engine forward of the policy, per
token, with gradient; ``num_train_epochs`` passes over the rollouts are the PPO epochs (TRL's
``num_iterations``), each a seeded shuffle cut into optimizer steps as for pairs.

The loss of a step is normalised as the objective says (``RolloutMixin.loss_normalizer``): per
response, per token of the whole step, or per micro-batch's tokens; the counts are summed over
every micro-batch and process before the step's first backward, so the gradient does not depend on
how the step is split (``selm.objectives.rollout.micro_batch_loss``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from selm.data.rollouts import TokenizedRollout, pad_token_rows, response_mask
from selm.engine import AnySequenceBatch, ReferencePolicy, collate_sequences, pack_sequences, score_tokens
from selm.errors import ConfigError, UserError
from selm.objectives import Objective, ObjectiveOutput
from selm.objectives.advantages import AdvantageEstimator, AdvantageInputs
from selm.objectives.rollout import (
    ESTIMATED_FIELDS,
    ROLLOUT_FIELDS,
    RolloutBatch,
    StepTotals,
    masked_mean,
    micro_batch_loss,
)
from selm.train.config import TrainingArguments
from selm.train.trainer import Trainer

# Fields the trainer fills from ``prepare``'s fixed [N, T] tensors (the rest come from the forward).
FIXED_FIELDS = ("sampling_token_logps", "reference_token_logps", "advantages", "old_values", "returns",
                "objective_advantages", "prefix_rewards")


class RolloutTrainer(Trainer):
    """Train ``model`` on rollouts with a rollout objective.

    Args:
        model, objective, args, pad_token_id, output_dir, accelerator, progress: as
            :class:`selm.train.trainer.Trainer`.
        rollouts: the round's judged responses; ``group`` ties the responses of one prompt.
        estimator: turns rewards (and the KL in the reward, the critic's values) into advantages.
        reference: π_ref, needed when the objective reads ``reference_token_logps`` or the
            estimator puts the KL in the reward.
        value_head: the critic (PPO), trained with the policy.
        critic_learning_rate: the critic's peak learning rate (None: ``args.learning_rate``).
        termination_token_id: the EOS id, for an objective that reads ``termination_token_logps``.

    After ``train``, ``rollout_metrics`` holds the round's rollout statistics (``rollout/…``: mean
    reward, advantage spread, KL to the reference, response length).
    """

    example_name = "rollout"

    def __init__(
        self,
        model: torch.nn.Module,
        objective: Objective,
        args: TrainingArguments,
        rollouts: Sequence[TokenizedRollout],
        pad_token_id: int,
        estimator: AdvantageEstimator,
        reference: ReferencePolicy | None = None,
        value_head: torch.nn.Module | None = None,
        critic_learning_rate: float | None = None,
        termination_token_id: int | None = None,
        output_dir: str | Path | None = None,
        accelerator: Any = None,
        progress: bool = True,
    ):
        if objective.field_table is not ROLLOUT_FIELDS:
            raise UserError(f"objective '{objective.name}' trains on pairs, not rollouts")
        self.estimator = estimator
        self.requires = objective.requires
        self.reads_values = "values" in self.requires
        if self.reads_values and value_head is None:
            raise UserError(f"objective '{objective.name}' trains a critic: it needs a value head")
        self.estimator_reads_kl = "kl" in estimator.requires
        self.reads_reference = "reference_token_logps" in self.requires or self.estimator_reads_kl
        if "objective_advantages" in self.requires and any(r.reward_vector is None for r in rollouts):
            raise UserError(f"objective '{objective.name}' needs a reward vector for every rollout (a vector judge)")
        if "prefix_rewards" in self.requires and any(r.prefix_rewards is None for r in rollouts):
            raise UserError(f"objective '{objective.name}' needs the judge's reward of every prefix of each rollout")
        self.reads_termination = "termination_token_logps" in self.requires
        if self.reads_termination and termination_token_id is None:
            raise UserError(f"objective '{objective.name}' reads the termination (EOS) log-probs: the tokenizer "
                            f"has no EOS token")
        self.termination_token_id = termination_token_id if self.reads_termination else None
        if self.reads_reference and reference is None:
            raise UserError(f"objective '{objective.name}' with advantage estimator '{estimator.name}' needs a "
                            f"reference model (the KL term), but none is configured")
        if self.reads_values and (args.fsdp or args.deepspeed is not None):
            key = "train.fsdp" if args.fsdp else "train.deepspeed"
            raise ConfigError(f"{key}: objective '{objective.name}' trains a critic, which selm does not shard "
                              f"yet; train it without {key}")
        self.fixed: dict[str, torch.Tensor] = {}
        self.rollout_metrics: dict[str, float] = {}
        super().__init__(model, objective, args, rollouts, pad_token_id,
                         reference=reference if self.reads_reference else None, output_dir=output_dir,
                         accelerator=accelerator, progress=progress,
                         value_head=value_head if self.reads_values else None,
                         critic_learning_rate=critic_learning_rate)
        # The objective may not read the reference itself (KL in the reward only): keep it anyway.
        self.reference = reference if self.reads_reference else None

    @property
    def rollouts(self) -> list[TokenizedRollout]:
        return self.train_examples

    def example_lengths(self) -> list[int]:
        return [len(r.prompt_ids) + len(r.response_ids) for r in self.rollouts]

    # ----- once per round ------------------------------------------------------------------------

    def _score(self, model: torch.nn.Module | ReferencePolicy, value_head: torch.nn.Module | None = None,
               desc: str = "scoring") -> Any:
        return score_tokens(model, [(r.prompt_ids, r.response_ids) for r in self.rollouts], self.pad_token_id,
                            value_head=value_head, batch_size=self.args.per_device_eval_batch_size,
                            chunk_size=self.args.chunk_size, device=self.accelerator.device,
                            packing=self.packing, progress=self.progress, desc=desc)

    def prepare(self) -> None:
        """The fixed per-token tensors of every rollout, and the advantages (see the module doc)."""
        rollouts = self.rollouts
        lengths = [len(r.response_ids) for r in rollouts]
        mask = response_mask(lengths, max(lengths))
        recorded = all(r.sampling_token_logps is not None for r in rollouts)
        critic = self.value_head if self.reads_values else None
        if recorded and critic is None:
            sampling = pad_token_rows([r.sampling_token_logps for r in rollouts])
        else:
            scores = self._score(self.scoring_model, value_head=critic, desc="round-start policy")
            sampling = (pad_token_rows([r.sampling_token_logps for r in rollouts]) if recorded
                        else pad_token_rows(scores.logps))
            if critic is not None:
                self.fixed["old_values"] = pad_token_rows(scores.values)
        self.fixed["sampling_token_logps"] = sampling
        kl = None
        if self.reference is not None:
            reference = pad_token_rows(self._score(self.as_scorer(self.reference), desc="reference").logps)
            self.fixed["reference_token_logps"] = reference
            kl = (sampling - reference) * mask
        rewards = torch.tensor([r.reward for r in rollouts], dtype=torch.float32)
        fmask = mask.to(torch.float32)
        self.rollout_metrics = {
            "rollout/reward": float(rewards.mean()),
            "rollout/reward_std": float(rewards.std()) if len(rollouts) > 1 else 0.0,
            "rollout/response_length": float(fmask.sum(-1).mean()),
        }
        if kl is not None:
            self.rollout_metrics["rollout/kl"] = float(kl.sum(-1).mean())
        if "prefix_rewards" in self.requires:
            self.fixed["prefix_rewards"] = pad_token_rows([r.prefix_rewards for r in rollouts])
        if self.requires & ESTIMATED_FIELDS:
            self._estimate_advantages(rewards, mask, kl)

    def _estimate_advantages(self, rewards: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None) -> None:
        """The estimator's advantages (and returns) from the [N] rewards, [N, T] mask and KL; per
        reward column too where the objective reads ``objective_advantages``."""
        rollouts = self.rollouts
        out = self.estimator(AdvantageInputs(
            rewards=rewards, group_ids=torch.tensor([r.group for r in rollouts]), response_mask=mask,
            kl=kl if self.estimator_reads_kl else None, values=self.fixed.get("old_values")))
        self.fixed["advantages"] = out.advantages
        if out.returns is not None:
            self.fixed["returns"] = out.returns
        if "objective_advantages" in self.requires:
            # One estimator run per objective's reward column (PAMA): [N, T, K].
            vectors = torch.tensor([r.reward_vector for r in rollouts], dtype=torch.float32)
            self.fixed["objective_advantages"] = torch.stack([self.estimator(AdvantageInputs(
                rewards=column, group_ids=torch.tensor([r.group for r in rollouts]), response_mask=mask,
                kl=kl if self.estimator_reads_kl else None, values=self.fixed.get("old_values"))).advantages
                for column in vectors.T], dim=-1)
        self.rollout_metrics["rollout/advantage_abs"] = float(masked_mean(out.advantages.abs(), mask.to(torch.float32)))

    # ----- one micro-batch -----------------------------------------------------------------------

    def rollout_batch(self, indices: list[int], train: bool) -> RolloutBatch:
        """The objective's input for rollouts ``indices``: one per-token engine forward of the
        policy (with the critic's values where read), plus ``prepare``'s fixed tensors.

        Returns:
            RolloutBatch of B = len(indices), T = the longest response among them.
        """
        rollouts = [self.rollouts[i] for i in indices]
        sequences = [(r.prompt_ids, r.response_ids) for r in rollouts]
        batch: AnySequenceBatch = (pack_sequences(sequences, self.pad_token_id, self.packing)
                                   if self.packing is not None else collate_sequences(sequences, self.pad_token_id))
        with torch.set_grad_enabled(train):
            stats = self.model(batch.to(self.accelerator.device), per_token=True,
                               with_entropy="token_entropies" in self.requires, with_values=self.reads_values,
                               termination_token_id=self.termination_token_id)
        width = stats.token_logps.shape[1]
        index = torch.tensor(indices)
        values: dict[str, torch.Tensor | None] = {
            "policy_token_logps": stats.token_logps,
            "response_mask": response_mask([len(r.response_ids) for r in rollouts], width).to(self.accelerator.device),
            "token_entropies": stats.token_entropies, "values": stats.values,
            "termination_token_logps": stats.termination_token_logps,
        }
        like = stats.token_logps
        for name in FIXED_FIELDS:
            if name in self.fixed and name in self.requires:
                values[name] = self.fixed[name][index, :width].to(device=like.device, dtype=like.dtype)
        return RolloutBatch(**{k: v for k, v in values.items() if v is not None})

    def training_batch(self, indices: list[int]) -> RolloutBatch:
        return self.rollout_batch(indices, train=True)

    def step_totals(self, micro_batches: list[list[int]], n_global: int) -> StepTotals:
        local = torch.tensor([float(sum(len(self.rollouts[i].response_ids) for m in micro_batches for i in m)),
                              float(sum(1 for m in micro_batches if m))], device=self.accelerator.device)
        if self.world_size > 1:
            local = self.accelerator.reduce(local, reduction="sum")
        return StepTotals(sequences=n_global, tokens=int(local[0]), micro_batches=int(local[1]))

    def scaled_loss(self, out: ObjectiveOutput, batch: RolloutBatch, totals: StepTotals) -> torch.Tensor:
        return micro_batch_loss(out.losses, batch.response_mask, self.objective.loss_normalizer, totals) * self.world_size

    def batch_tokens(self, batch: RolloutBatch) -> int:
        return int(batch.response_mask.sum())
