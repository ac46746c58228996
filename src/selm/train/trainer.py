"""The trainers: one objective, one policy, an optional reference, Accelerate underneath.

``Trainer`` holds what every trainer shares; ``PreferenceTrainer`` (here) trains on pairs,
``selm.train.rollout_trainer.RolloutTrainer`` on rollouts.

Why Accelerate directly rather than transformers' Trainer: the step here is not "model(**batch).loss".
Chosen, rejected and exploration responses go through one forward of the chunked log-prob engine,
reference log-probs are precomputed and cached, and the loss of an accumulation window is scaled by
the number of examples in the whole window. Transformers' Trainer has changed its accumulation
scaling across versions (trl#2617); owning the ~150 lines of loop keeps the scaling exact and
testable, while Accelerate still provides devices, mixed precision and DDP/FSDP/DeepSpeed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from selm.data import RowLayout, TokenizedPair, collate_preference_rows, length_grouped_batches
from selm.distributed import broadcast_from_main, gather_in_order, shard_bounds
from selm.engine import (
    AnySequenceBatch,
    FeatureProbe,
    ReferencePolicy,
    SequenceStatsModel,
    sequence_stats,
    tied_head_gradient_in_place,
)
from selm.errors import ConfigError, UserError
from selm.eval.keys import STEP_HEADLINE
from selm.heap import keep_freed_memory
from selm.io import read_jsonl, replace_dir_atomically, write_jsonl
from selm.modeling.loading import model_fingerprint
from selm.objectives import Objective, ObjectiveOutput, PreferenceBatch
from selm.objectives.fields import CLIPPED_RATIO_FIELDS, PREFERENCE_FIELDS, ReferenceUse, Source
from selm.objectives.rollout import StepTotals
from selm.optim import adamw, transformers_schedule
from selm.progress import progress_bar
from selm.train.config import TrainingArguments
from selm.train.critic import restore_critic, save_critic
from selm.train.deepspeed import DEEPSPEED_STATE, ZeroEngine, requested_deepspeed
from selm.train.diagnostics import pair_gradient_stats
from selm.train.packing_check import resolve_packing
from selm.train.reference_cache import cached_reference_logps, split_features
from selm.train.sharding import (
    SHARDED_STATE,
    consolidated_state_dict,
    load_sharded_state,
    save_sharded_state,
    shard_model,
)

STATE_FILE = "trainer_state.json"
# Filled for every objective: their sum is the step's token count (tokens/s).
COUNTED_FIELDS = frozenset({"chosen_lengths", "rejected_lengths"})


class NonFiniteLossError(UserError):
    """Too many non-finite losses in a row; the last checkpoint is resumable."""


class AccumulatedStep(NamedTuple):
    """What ``PreferenceTrainer.accumulate`` did: gradients of one optimizer step, not yet applied.

    Attributes:
        finite: every process's losses were finite (else the step is to be skipped everywhere).
        metrics: (examples, metric name -> value) per real micro-batch of this process; [] when not finite.
        tokens: response tokens this process scored (chosen + rejected).
    """

    finite: bool
    metrics: list[tuple[int, dict[str, float]]]
    tokens: int


@dataclass
class TrainResult:
    """Summary of a finished `train()`: steps taken, mean metrics, skipped steps, wall time."""

    global_step: int
    metrics: dict[str, float]
    nonfinite_steps: int
    train_seconds: float
    tokens_per_second: float
    reference_cache_hit: bool | None = None
    reference_seconds: float = 0.0
    log_history: list[dict[str, float]] = field(default_factory=list)


def _mean_metrics(records: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
    """Example-weighted mean of per-micro-batch metric dicts."""
    total = sum(n for n, _ in records)
    keys = {k for _, m in records for k in m}
    return {k: sum(n * m[k] for n, m in records if k in m) / max(total, 1) for k in sorted(keys)}


class Trainer:
    """What the pair and the rollout trainers share: Accelerate, the optimizer and schedule, the
    epoch cut into optimizer steps, exact loss scaling over micro-batches and processes, the
    non-finite guard, logging and checkpoints.

    A subclass knows its examples: ``check_examples`` refuses bad ones before anything is built,
    ``prepare`` runs once before the first step (reference log-probs, advantages), and
    ``training_batch`` / ``step_totals`` / ``scaled_loss`` / ``batch_tokens`` make one micro-batch's
    loss. ``train`` runs the whole loop; ``windows(epoch)`` and ``accumulate(micro_batches,
    n_global)`` are public for tests and custom loops.

    Args:
        model: the policy (a transformers causal LM, possibly PEFT-wrapped).
        objective: the loss; its ``requires`` decides what is computed.
        args: optimisation settings.
        train_examples: the examples (pairs or rollouts), indexed by the epoch order.
        pad_token_id: the tokenizer's pad id.
        reference: π_ref, or None for reference-free objectives. For a PEFT policy pass
            ``ReferencePolicy(model, disable_adapters=True)``: no second copy of the weights.
        output_dir: checkpoints (``checkpoint-N/``) and ``train_log.jsonl`` go here.
        accelerator: an ``accelerate.Accelerator``; one is made when None.
        progress: show a progress bar.
        value_head: a critic trained with the policy (PPO), or None.
        critic_learning_rate: the value head's peak learning rate (None: ``args.learning_rate``).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        objective: Objective,
        args: TrainingArguments,
        train_examples: Sequence[Any],
        pad_token_id: int,
        reference: ReferencePolicy | None = None,
        output_dir: str | Path | None = None,
        accelerator: Any = None,
        progress: bool = True,
        value_head: torch.nn.Module | None = None,
        critic_learning_rate: float | None = None,
    ):
        from accelerate import Accelerator

        if not train_examples:
            raise UserError(f"no training {self.example_name}s: the data is empty after validation and truncation")
        needs_ref = objective.needs_reference
        if needs_ref and reference is None:
            raise UserError(f"objective '{objective.name}' needs a reference model, but none is configured")
        self.model: torch.nn.Module = SequenceStatsModel(model, args.chunk_size, value_head)
        self.objective = objective
        self.args = args
        self.train_examples = list(train_examples)
        self.pad_token_id = pad_token_id
        self.reference = reference if needs_ref else None
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        if self.accelerator.device.type == "cpu":
            keep_freed_memory()
        # Accelerate's own FSDP or DeepSpeed (a launch with such a config) is taken as a request for
        # selm's FSDP2 or DeepSpeed engine; one process has nothing to shard.
        zero = requested_deepspeed(args.deepspeed)
        self.zero = (ZeroEngine(zero, args) if zero is not None
                     and (self.world_size > 1 or self.accelerator.distributed_type.value == "DEEPSPEED") else None)
        self.sharded = ((args.fsdp or self.accelerator.distributed_type.value == "FSDP") and self.world_size > 1
                        and self.zero is None)
        self.progress = progress and self.accelerator.is_main_process
        self.critic_learning_rate = critic_learning_rate
        self.check_examples()
        # Checked on the bare models, before Accelerate wraps or shards them.
        separate_reference = [self.reference.model] if self.reference and self.reference.model is not model else []
        self.packing = resolve_packing(args.padding_free, model, *separate_reference)
        # Of the bare weights: under FSDP each process holds only a shard of them once training is set up.
        self.reference_fingerprint = (model_fingerprint(self.reference.model, exclude="lora_" if self.reference.disable_adapters else None)
                                      if self.precomputes_reference else None)
        self.global_step = 0
        self.nonfinite_steps = 0
        self._build_optimizer()

    example_name = "example"
    reference_cache_hit: bool | None = None

    @property
    def precomputes_reference(self) -> bool:
        """Reference log-probs are computed once before training and cached on disk under the
        reference's fingerprint (pairs; not when the objective needs the reference live)."""
        return False

    # ----- what a subclass provides --------------------------------------------------------------

    def check_examples(self) -> None:
        """Raise UserError naming the first example the objective cannot train on."""

    def prepare(self) -> None:
        """Once, before the first step (and before a checkpoint is loaded): what the examples need
        from the round-start weights or the reference."""

    def example_lengths(self) -> list[int]:
        """Each training example's longest row in tokens (``group_by_length``)."""
        raise NotImplementedError

    def training_batch(self, indices: list[int]) -> Any:
        """The objective's input for the training examples ``indices`` (with gradient)."""
        raise NotImplementedError

    def step_totals(self, micro_batches: list[list[int]], n_global: int) -> StepTotals:
        """Counts over the whole optimizer step that the losses are normalised by."""
        return StepTotals(sequences=n_global, tokens=0, micro_batches=0)

    def scaled_loss(self, out: ObjectiveOutput, batch: Any, totals: StepTotals) -> torch.Tensor:
        """This micro-batch's share of the step loss, times the number of processes (DDP averages)."""
        raise NotImplementedError

    def batch_tokens(self, batch: Any) -> int:
        """Response tokens scored in ``batch`` (tokens/s)."""
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        """Held-out metrics, prefixed ``eval/``; {} when there is nothing to evaluate."""
        return {}

    def gradient_diagnostics(self) -> dict[str, float]:
        """Gradient-entanglement metrics (pairs only); {} otherwise."""
        return {}

    def save_extra(self, folder: Path) -> None:
        """Write what a checkpoint holds besides the policy, optimizer and counters: the critic."""
        if hasattr(self.accelerator.unwrap_model(self.model), "value_head"):
            save_critic(self.value_head, folder)

    def load_extra(self, folder: Path) -> None:
        """Restore what ``save_extra`` wrote."""
        if hasattr(self.accelerator.unwrap_model(self.model), "value_head"):
            restore_critic(self.value_head, folder)

    @property
    def value_head(self) -> torch.nn.Module:
        """The critic being trained (PPO): a value head on the policy, or a separate value model."""
        return self.accelerator.unwrap_model(self.model).value_head

    # ----- setup -------------------------------------------------------------------------------

    @property
    def policy(self) -> torch.nn.Module:
        """The bare policy (no DDP/FSDP wrapper): what to save, sample from or hand to the next round."""
        return self.accelerator.unwrap_model(self.model).policy

    @property
    def scoring_model(self) -> SequenceStatsModel:
        """The policy to score with, without gradient: the engine module itself, outside DDP (whose
        forward would sync buffers), and under FSDP the sharded root, whose forward gathers the
        weights (every process must then score the same number of batches)."""
        return self.accelerator.unwrap_model(self.model)

    def as_scorer(self, reference: ReferencePolicy) -> ReferencePolicy:
        """``reference`` to score with: where it is the policy itself (the round-start weights, or
        the LoRA policy with its adapters off), through :attr:`scoring_model`."""
        if reference.model is self.policy:
            return ReferencePolicy(self.scoring_model, disable_adapters=reference.disable_adapters)
        return reference

    def policy_state_dict(self) -> dict[str, torch.Tensor] | None:
        """Under FSDP or ZeRO-3, the policy's consolidated weights (main process; {} elsewhere) to
        save with ``save_pretrained(state_dict=...)``; None when the policy module holds its full
        weights. A collective when sharded: every process must call it."""
        if self.zero is not None:
            return self.zero.consolidated_state_dict()
        if not self.sharded:
            return None
        return consolidated_state_dict(self.scoring_model).get("policy", {})

    def release(self) -> None:
        """End training for good, keeping :attr:`policy`: under DeepSpeed the engine and its
        ZeRO optimizer are taken off the policy (see ``ZeroEngine.release``), so that they are
        freed with this trainer rather than with the policy, which a caller (the round loop)
        keeps or trains again. Take :meth:`policy_state_dict` first. Nothing to do otherwise."""
        if self.zero is not None and self.zero.engine is not None:
            self.zero.release()

    @property
    def world_size(self) -> int:
        return self.accelerator.num_processes

    @property
    def steps_per_epoch(self) -> int:
        global_batch = self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps * self.world_size
        return max(1, math.ceil(len(self.train_examples) / global_batch))

    @property
    def total_steps(self) -> int:
        if self.args.max_steps > 0:
            return self.args.max_steps
        return max(1, math.ceil(self.steps_per_epoch * self.args.num_train_epochs))

    def _build_optimizer(self) -> None:
        a = self.args
        if self.sharded:
            # Sharded before the optimizer is built: AdamW's moments are then shards too.
            shard_model(self.model, self.accelerator.device.type)
        # Fused AdamW is the Trainer's default and ~0.9 s/step faster than the loop on Gemma-270M
        # here; its kernel takes no DTensor shards (DeepSpeed's flat partitions are plain tensors).
        self.optimizer = adamw(self.model.policy.parameters(), lr=a.learning_rate, weight_decay=a.weight_decay,
                               betas=(a.adam_beta1, a.adam_beta2), eps=a.adam_epsilon,
                               fused_device=None if self.sharded else self.accelerator.device)
        if hasattr(self.model, "value_head"):
            # The critic's own learning rate, scheduled like the policy's; no decay on a value head.
            self.optimizer.add_param_group({"params": list(self.model.value_head.parameters()), "weight_decay": 0.0,
                                            "lr": self.critic_learning_rate or a.learning_rate})
        adamw_groups = self.optimizer
        if self.zero is not None:
            self.model, self.optimizer = self.zero.initialize(self.model, self.optimizer)
        # On the client AdamW: DeepSpeed steps it with these same param_group dicts, selm the
        # schedule. Made after initialize, which drops an empty group (LoRA's: no 1-D weights).
        self.scheduler = transformers_schedule(adamw_groups, a.lr_scheduler_type, a.warmup_ratio, self.total_steps)
        if self.zero is None and not self.sharded:
            self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        if a.gradient_checkpointing:
            base = self.policy
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if hasattr(base, "enable_input_require_grads"):
                base.enable_input_require_grads()

    # ----- data order --------------------------------------------------------------------------

    def epoch_order(self, epoch: int) -> list[int]:
        """A seeded permutation of the training example indices; with ``group_by_length``, each
        global batch (cut from it in order by ``windows``) holds examples of similar length."""
        if self.args.group_by_length:
            a = self.args
            global_batch = a.per_device_train_batch_size * a.gradient_accumulation_steps * self.world_size
            lengths = self.example_lengths()
            return [i for batch in length_grouped_batches(lengths, global_batch, a.seed + epoch) for i in batch]
        g = torch.Generator().manual_seed(self.args.seed + epoch)
        return torch.randperm(len(self.train_examples), generator=g).tolist()

    def windows(self, epoch: int) -> list[tuple[int, list[list[int]]]]:
        """The epoch as optimizer steps: (examples in the global batch, this process's micro-batches).

        Every process gets the same number of micro-batches per step, so the collectives inside
        DDP's forward and backward pair up across processes. Where a process's share of a short
        last batch runs out, its remaining micro-batches are empty lists: padding that
        ``accumulate`` runs with loss weight 0.
        """
        a = self.args
        bs = a.per_device_train_batch_size
        order = self.epoch_order(epoch)
        global_batch = bs * a.gradient_accumulation_steps * self.world_size
        rank = self.accelerator.process_index
        steps = []
        for start in range(0, len(order), global_batch):
            chunk = order[start:start + global_batch]
            mine = chunk[rank::self.world_size]
            n_micro = math.ceil(math.ceil(len(chunk) / self.world_size) / bs)
            steps.append((len(chunk), [mine[i * bs:(i + 1) * bs] for i in range(n_micro)]))
        return steps

    # ----- train -------------------------------------------------------------------------------

    def train(self, resume_from_checkpoint: str | Path | None = None, log_file: str | Path | None = None) -> TrainResult:
        """Run the optimisation; returns a TrainResult. Logs one JSON line per logging step."""
        a = self.args
        start_time = time.perf_counter()
        self.prepare()
        reference_seconds = time.perf_counter() - start_time
        if resume_from_checkpoint is not None:
            self.load_checkpoint(Path(resume_from_checkpoint))
        log_path = Path(log_file) if log_file else (self.output_dir / "train_log.jsonl" if self.output_dir else None)
        if log_path is not None and self.accelerator.is_main_process:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            if resume_from_checkpoint is None:
                log_path.write_text("")
            else:
                self._truncate_log(log_path)
        self.model.train()
        bar = progress_bar(total=self.total_steps, initial=self.global_step, desc="train", unit="step",
                   disable=not self.progress, dynamic_ncols=True)
        history: list[dict[str, float]] = []
        pending: list[tuple[int, dict[str, float]]] = []
        consecutive_nonfinite = 0
        tokens = 0
        step_time = time.perf_counter()
        kind = "FSDP" if self.sharded else "DEEPSPEED" if self.zero else str(self.accelerator.distributed_type.value)
        while self.global_step < self.total_steps:
            epoch, offset = divmod(self.global_step, self.steps_per_epoch)
            n_global, micro_batches = self.windows(epoch)[offset]
            with tied_head_gradient_in_place(self.scoring_model, kind):
                ok, records, n_tokens = self.accumulate(micro_batches, n_global)
            tokens += n_tokens
            if ok:
                consecutive_nonfinite = 0
                grad_norm = self._optimizer_step()
                pending.extend(records)
            else:
                if self.zero is not None:
                    self.zero.discard()
                self.nonfinite_steps += 1
                consecutive_nonfinite += 1
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            self.global_step += 1
            bar.update(1)
            if ok and (self.global_step % a.logging_steps == 0 or self.global_step == self.total_steps):
                # Every process logs from its own shard: gather them so the log is the global batch's.
                entry = {"step": self.global_step, "epoch": round(self.global_step / self.steps_per_epoch, 4),
                         **_mean_metrics(gather_in_order(self.accelerator, pending)),
                         "learning_rate": self.scheduler.get_last_lr()[0], "nonfinite_steps": self.nonfinite_steps}
                if grad_norm is not None:
                    entry["grad_norm"] = grad_norm
                elapsed = time.perf_counter() - step_time
                entry["tokens_per_s"] = sum(gather_in_order(self.accelerator, [tokens])) / max(elapsed, 1e-9)
                history.append(entry)
                pending = []
                self._log(entry, log_path, bar)
            if a.eval_steps and self.global_step % a.eval_steps == 0 and (held_out := self.evaluate()):
                self._log({"step": self.global_step, **held_out}, log_path, bar)
            if a.diagnostics_steps and self.global_step % a.diagnostics_steps == 0:
                self._log({"step": self.global_step, **self.gradient_diagnostics()}, log_path, bar)
            if consecutive_nonfinite >= a.max_nonfinite_steps:
                self._save_if_possible()
                raise NonFiniteLossError(
                    f"{consecutive_nonfinite} non-finite losses in a row at step {self.global_step}; "
                    f"lower the learning rate or check the data (state saved for --resume)")
            if a.save_steps and self.global_step % a.save_steps == 0 and self.global_step < self.total_steps:
                self._save_if_possible()
        bar.close()
        elapsed = time.perf_counter() - start_time
        if log_path is not None and self.accelerator.is_main_process and log_path.is_file():
            # The log holds the steps before a resume too; the in-memory history does not.
            history = read_jsonl(log_path)
        history = broadcast_from_main(self.accelerator, history)
        summary = _mean_metrics([(1, {k: v for k, v in h.items() if not k.startswith("eval/") and k not in ("step", "epoch")})
                                 for h in history if "loss" in h])
        summary.update(self.evaluate())
        return TrainResult(self.global_step, summary, self.nonfinite_steps, elapsed,
                           tokens / max(time.perf_counter() - step_time, 1e-9), self.reference_cache_hit,
                           reference_seconds, history)

    def accumulate(self, micro_batches: list[list[int]], n_global: int) -> AccumulatedStep:
        """Forward/backward every micro-batch of one optimizer step, into the parameters' ``.grad``
        (no optimizer update; ``train`` steps, clips and zeroes).

        Each micro-batch's loss is its share of the step loss (``scaled_loss``: for pairs
        ``losses.sum() · W / n_global``, W processes whose gradients DDP averages), so the
        accumulated gradient equals the gradient of the loss over the whole global batch, however
        it is split into micro-batches and processes (trl#2617). A padding micro-batch (empty
        index list, see ``windows``) runs one example at weight 0.

        Args:
            micro_batches: this process's training example indices per micro-batch (``windows``).
            n_global: examples in the global batch of this step, all processes together.
        """
        records = []
        n_tokens = 0
        finite = True
        totals = self.step_totals(micro_batches, n_global)
        for i, indices in enumerate(micro_batches):
            sync = i == len(micro_batches) - 1
            with self._gradient_sync(sync):
                batch = self.training_batch(indices or [0])
                out = self.objective(batch)
                loss = self.scaled_loss(out, batch, totals) * (1.0 if indices else 0.0)
                finite = finite and bool(torch.isfinite(loss))
                # Backward even a non-finite loss: every process must join DDP's gradient
                # all-reduce; the step is then skipped by all processes together.
                if self.zero is not None:
                    self.zero.backward(loss)
                else:
                    self.accelerator.backward(loss)
            if indices:
                n_tokens += self.batch_tokens(batch)
                metrics = {"loss": float(out.losses.detach().mean())}
                metrics.update({k: float(v) for k, v in out.metrics.items()})
                records.append((len(indices), metrics))
        if not self._finite_everywhere(finite):
            return AccumulatedStep(False, [], n_tokens)
        return AccumulatedStep(True, records, n_tokens)

    def _optimizer_step(self) -> float | None:
        """Clip the gradient (``train.max_grad_norm``) and apply it; returns its global L2 norm
        before clipping, None without clipping. DeepSpeed clips inside its own step."""
        max_norm = self.args.max_grad_norm
        if self.zero is not None:
            norm = self.zero.step()
            return norm if max_norm is not None else None
        norm = self._clip_gradients(max_norm) if max_norm is not None else None
        self.optimizer.step()
        return norm

    def _clip_gradients(self, max_norm: float) -> float:
        """Clip the (averaged) gradient's global L2 norm to ``max_norm``; returns the norm before."""
        if not self.sharded:
            return float(self.accelerator.clip_grad_norm_(self.model.parameters(), max_norm))
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        # Each process holds a shard of every gradient: the norm of the whole is an all-reduce.
        norm = torch.nn.utils.get_total_norm(grads)
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
        torch.nn.utils.clip_grads_with_norm_(self.model.parameters(), max_norm, norm)
        return float(norm)

    def _gradient_sync(self, sync: bool) -> Any:
        """Context of one micro-batch's backward: without the gradient all-reduce (DDP) or
        reduce-scatter (FSDP) unless ``sync``, the step's last micro-batch. DeepSpeed's ZeRO-2/3
        reduce every backward into the partitions: nothing to hold back."""
        if sync or self.zero is not None:
            return contextlib.nullcontext()
        if not self.sharded:
            return self.accelerator.no_sync(self.model)

        @contextlib.contextmanager
        def unsynced() -> Any:
            self.model.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                self.model.set_requires_gradient_sync(True)

        return unsynced()

    def _finite_everywhere(self, local: bool) -> bool:
        """True when no process saw a non-finite loss (one all-reduce per optimizer step)."""
        if self.world_size == 1:
            return local
        flag = torch.tensor([0.0 if local else 1.0], device=self.accelerator.device)
        return float(self.accelerator.reduce(flag, reduction="sum")) == 0.0

    # ----- logging -----------------------------------------------------------------------------

    def _log(self, entry: dict[str, float], log_path: Path | None, bar: Any) -> None:
        if not self.accelerator.is_main_process:
            return
        if log_path is not None:
            with log_path.open("a") as f:
                f.write(json.dumps(entry) + "\n")
        shown = {k: entry[k] for k in STEP_HEADLINE if k in entry}
        if shown:
            bar.set_postfix({k.split("/")[-1] if not k.startswith("eval") else "eval_acc": f"{v:.3f}" for k, v in shown.items()})
            if self.progress:
                bar.write(f"step {entry['step']:>5}  " + "  ".join(f"{k} {v:.4f}" for k, v in shown.items()))
        if self.accelerator.trackers:
            self.accelerator.log({k: v for k, v in entry.items() if k != "step"}, step=int(entry["step"]))

    def _truncate_log(self, log_path: Path) -> None:
        """On resume, drop log lines past the checkpoint's step so no step is logged twice."""
        if not log_path.exists():
            return
        write_jsonl(log_path, [row for row in read_jsonl(log_path) if row.get("step", 0) <= self.global_step])

    # ----- checkpoints -------------------------------------------------------------------------

    def _save_if_possible(self) -> None:
        if self.output_dir is not None:
            self.save_checkpoint(self.output_dir / f"checkpoint-{self.global_step}")

    def save_checkpoint(self, path: Path) -> None:
        """Model weights, optimizer, scheduler, each process's RNG and counters, swapped into place
        by the main process. Under DDP the weights and optimizer state are the same on every
        process and the main process writes them; under FSDP (DeepSpeed) each process writes its
        own shard of both into ``sharded/`` (``deepspeed/``) first."""
        rng_states = gather_in_order(self.accelerator, [torch.get_rng_state()])
        staging = path.with_name(f".{path.name}.sharded.tmp")
        if self.sharded or self.zero is not None:
            if self.accelerator.is_main_process:
                shutil.rmtree(staging, ignore_errors=True)
            self.accelerator.wait_for_everyone()
            if self.zero is not None:
                self.zero.save(staging)
            else:
                save_sharded_state(self.model, self.optimizer, staging)
            self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            self.accelerator.wait_for_everyone()
            return

        def build(folder: Path) -> None:
            if self.sharded or self.zero is not None:
                os.replace(staging, folder / (SHARDED_STATE if self.sharded else DEEPSPEED_STATE))
            else:
                self.policy.save_pretrained(folder / "model", safe_serialization=True)
                torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
                self.save_extra(folder)
            torch.save(self.scheduler.state_dict(), folder / "scheduler.pt")
            torch.save(rng_states, folder / "rng.pt")
            (folder / STATE_FILE).write_text(json.dumps({"global_step": self.global_step,
                                                        "nonfinite_steps": self.nonfinite_steps,
                                                        "objective": self.objective.state_dict()}))

        replace_dir_atomically(path, build)
        self._rotate_checkpoints(path.parent)
        self.accelerator.wait_for_everyone()

    def _load_weights(self, path: Path) -> None:
        """The policy's weights from a data-parallel checkpoint's ``model/`` folder."""
        from safetensors.torch import load_file

        model = self.policy
        weights = {}
        for file in sorted((path / "model").glob("*.safetensors")):
            weights.update(load_file(file))
        if hasattr(model, "peft_config"):
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(model, weights)
            return
        missing, unexpected = model.load_state_dict(weights, strict=False)
        tied = set(getattr(model, "_tied_weights_keys", None) or [])
        if unexpected or set(missing) - tied:
            raise UserError(f"{path}: checkpoint weights do not match the model "
                            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")

    def _rotate_checkpoints(self, folder: Path) -> None:
        checkpoints = sorted(folder.glob("checkpoint-*[0-9]"), key=lambda p: int(p.name.split("-")[-1]))
        for old in checkpoints[: -self.args.save_total_limit]:
            shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self, path: Path) -> None:
        """Restore what ``save_checkpoint`` wrote; training continues at the saved step."""
        state_path = path / STATE_FILE
        if not state_path.is_file():
            raise UserError(f"{path}: not a selm checkpoint ({STATE_FILE} missing)")
        state = json.loads(state_path.read_text())
        saved = ("train.fsdp" if (path / SHARDED_STATE).is_dir() else
                 "train.deepspeed" if (path / DEEPSPEED_STATE).is_dir() else "data-parallel")
        running = "train.fsdp" if self.sharded else "train.deepspeed" if self.zero is not None else "data-parallel"
        if saved != running:
            raise UserError(f"{path}: a checkpoint of a {saved} run, resumed as a {running} one; "
                            f"resume it with the settings it was saved with")
        if self.zero is not None:
            self.zero.load(path / DEEPSPEED_STATE)
        elif self.sharded:
            load_sharded_state(self.model, self.optimizer, path / SHARDED_STATE)
        else:
            self._load_weights(path)
            self.load_extra(path)
            self.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
        self.scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
        rng_states = torch.load(path / "rng.pt", weights_only=True)
        # One state per process; a resume with more processes than were saved reuses the first.
        rank = self.accelerator.process_index
        torch.set_rng_state(rng_states[rank] if rank < len(rng_states) else rng_states[0])
        self.global_step = int(state["global_step"])
        self.nonfinite_steps = int(state["nonfinite_steps"])
        # LCPO's reliability: without it a resumed run would restart from the configured value.
        if state.get("objective"):
            self.objective.load_state_dict(state["objective"])


class PreferenceTrainer(Trainer):
    """Train ``model`` on tokenized preference pairs with ``objective``.

    Args:
        model, objective, args, pad_token_id, reference, output_dir, accelerator, progress: as
            :class:`Trainer`.
        train_pairs: tokenized (prompt, chosen, rejected[, explore]) pairs.
        eval_pairs: optional held-out pairs, evaluated with the same metrics (``eval/`` prefix).
        features: the sparse autoencoder and layer an objective that reads features (FPO) pools
            with (see ``selm.train.sae.feature_probe``); the reference's are precomputed and
            cached with its log-probs.

    Besides :class:`Trainer`'s pieces, ``preference_batch(pairs, train)`` builds the objective's
    input for one micro-batch and ``evaluate()`` scores the eval pairs.
    """

    example_name = "pair"

    @property
    def precomputes_reference(self) -> bool:
        return (self.reference is not None and not self.objective.needs_live_reference
                and self.args.precompute_reference)

    def __init__(
        self,
        model: torch.nn.Module,
        objective: Objective,
        args: TrainingArguments,
        train_pairs: Sequence[TokenizedPair],
        pad_token_id: int,
        reference: ReferencePolicy | None = None,
        eval_pairs: Sequence[TokenizedPair] | None = None,
        output_dir: str | Path | None = None,
        accelerator: Any = None,
        progress: bool = True,
        features: FeatureProbe | None = None,
    ):
        self.eval_pairs = list(eval_pairs or [])
        if objective.reads_features and features is None:
            raise UserError(f"objective '{objective.name}' reads sparse-autoencoder features: the trainer needs "
                            f"an autoencoder (features=FeatureProbe(...), see selm.train.sae.feature_probe)")
        self.features = features if objective.reads_features else None
        # What each micro-batch computes follows from the objective's fields (selm.objectives.fields).
        self.fields = PREFERENCE_FIELDS.select(objective.requires | COUNTED_FIELDS)
        self.include_explore = "explore" in objective.response_roles
        self.include_online = "online" in objective.response_roles
        # Per-token statistics against the reference come out of the policy's own forward (TDPO, A-LoL seq).
        self.engine_reference = any(f.source is Source.POLICY and f.reference is ReferenceUse.LIVE for f in self.fields)
        self.ratio_clip = objective.token_ratio_clip if objective.requires & CLIPPED_RATIO_FIELDS else None
        self.reads_reference_logps = any(f.source is Source.REFERENCE for f in self.fields)
        self.reads_grad_norms = any(f.source is Source.GRADIENT for f in self.fields)
        self.reference_logps: dict[str, torch.Tensor] | None = None
        self.reference_features: dict[str, torch.Tensor] = {}
        self.reference_cache_hit: bool | None = None
        if self.reads_grad_norms and (args.fsdp or args.deepspeed is not None):
            raise ConfigError(f"objective: '{objective.name}' takes per-pair gradients of the whole model on one "
                              f"process, which train.fsdp / train.deepspeed shard; train it without them")
        super().__init__(model, objective, args, train_pairs, pad_token_id, reference=reference,
                         output_dir=output_dir, accelerator=accelerator, progress=progress)

    @property
    def train_pairs(self) -> list[TokenizedPair]:
        return self.train_examples

    def check_examples(self) -> None:
        objective = self.objective
        pair_values = [f.name for f in self.fields if f.source is Source.PAIR_VALUE]
        if self.include_explore and any(p.explore_ids is None for p in self.train_pairs):
            missing = next(p.index for p in self.train_pairs if p.explore_ids is None)
            raise UserError(f"objective '{objective.name}' needs an exploration response ('explore') "
                            f"for every pair; row {missing} has none")
        for name in pair_values:
            missing = next((p.index for p in self.train_pairs + self.eval_pairs if name not in p.extras), None)
            if missing is not None:
                raise UserError(f"objective '{objective.name}' needs '{name}' for every pair; row {missing} has none")
        online_counts = {len(p.online_ids or []) for p in self.train_pairs + self.eval_pairs}
        if self.include_online and (len(online_counts) != 1 or 0 in online_counts):
            raise UserError(f"objective '{objective.name}' needs the same number (>= 1) of online samples "
                            f"('online_ids') for every pair")

    def prepare(self) -> None:
        self.precompute_reference()

    def example_lengths(self) -> list[int]:
        return [len(p.prompt_ids) + max(len(p.chosen_ids), len(p.rejected_ids), len(p.explore_ids or ()))
                for p in self.train_pairs]

    def training_batch(self, indices: list[int]) -> PreferenceBatch:
        return self.preference_batch([self.train_pairs[j] for j in indices], train=True)

    def scaled_loss(self, out: ObjectiveOutput, batch: PreferenceBatch, totals: StepTotals) -> torch.Tensor:
        return out.losses.sum() * (self.world_size / totals.sequences)

    def batch_tokens(self, batch: PreferenceBatch) -> int:
        return int(batch.chosen_lengths.sum() + batch.rejected_lengths.sum())

    # ----- reference ---------------------------------------------------------------------------

    def precompute_reference(self) -> None:
        """Compute (or load from the cache) reference log-probs for every train and eval pair."""
        if not self.precomputes_reference:
            return
        pairs = self.train_pairs + self.eval_pairs
        cache_dir = Path(self.args.reference_cache_dir) if self.args.reference_cache_dir else None
        logps, hit = cached_reference_logps(
            self.as_scorer(self.reference), self.reference_fingerprint, pairs, self.pad_token_id,
            cache_dir=cache_dir, accelerator=self.accelerator, batch_size=self.args.per_device_eval_batch_size,
            chunk_size=self.args.chunk_size, include_explore=self.include_explore, device=self.accelerator.device,
            progress=self.progress, packing=self.packing, features=self.features,
        )
        self.reference_logps, self.reference_features = split_features(logps)
        self.reference_cache_hit = hit
        self._ref_row = {id(p): i for i, p in enumerate(pairs)}
        if not self.reference.disable_adapters:
            # The frozen copy is no longer needed: free its memory for the training step.
            self.reference = None

    # ----- one micro-batch ---------------------------------------------------------------------

    def preference_batch(self, pairs: Sequence[TokenizedPair], train: bool) -> PreferenceBatch:
        """The objective's input for ``pairs``: the fields it requires, plus the response lengths.

        One engine forward of the policy over every response row the fields need (with gradient
        when ``train``), the reference's log-probs of those rows (from the precomputed cache, or a
        live no-grad forward), per-sequence gradient norms if required, and the pairs' own values.

        Returns:
            PreferenceBatch of B = len(pairs) on the accelerator's device.
        """
        batch, layout = collate_preference_rows(pairs, self.pad_token_id, include_explore=self.include_explore,
                                                include_online=self.include_online, packing=self.packing)
        batch = batch.to(self.accelerator.device)
        with torch.set_grad_enabled(train):
            stats = self.model(batch, reference=self.reference if self.engine_reference else None,
                               ratio_clip=self.ratio_clip, features=self.features)
        grad_norms = self._grad_norms(pairs, stats.logps) if self.reads_grad_norms else {}
        reference = self._reference_rows(pairs, batch, layout) if self.reads_reference_logps else {}
        values: dict[str, torch.Tensor] = {}
        for spec in self.fields:
            if spec.source is Source.PAIR_VALUE:
                values[spec.name] = torch.tensor([p.extras[spec.name] for p in pairs], dtype=stats.logps.dtype,
                                                 device=self.accelerator.device)
                continue
            if spec.source is Source.POLICY:
                rows = getattr(stats, spec.statistic)[layout.rows(spec.role)]
            elif spec.source is Source.REFERENCE:
                rows = reference[spec.statistic][spec.role]
            else:
                rows = grad_norms[spec.role]
            values[spec.name] = spec.arrange(rows, len(pairs))
        return PreferenceBatch.from_values(values)

    def _grad_norms(self, pairs: Sequence[TokenizedPair], like: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"chosen": [B], "rejected": [B]} ‖∇θ log π_θ(y | x)‖, detached, in the dtype and device of
        ``like``: one more forward and a backward per sequence (normalized_margin)."""
        norms = pair_gradient_stats(self.policy, pairs, self.pad_token_id, chunk_size=self.args.chunk_size,
                                    batch_size=len(pairs), with_inner=False)
        return {"chosen": norms.chosen_sq_norm.sqrt().to(like), "rejected": norms.rejected_sq_norm.sqrt().to(like)}

    def _reference_rows(self, pairs: Sequence[TokenizedPair], batch: AnySequenceBatch,
                        layout: RowLayout) -> dict[str, dict[str, torch.Tensor]]:
        """Statistic (``logps``, and ``features`` with a feature probe) -> role -> the reference's
        values of that role's rows (B·k for k per pair): from the precomputed cache when there is
        one, else from a no-grad forward over ``batch``."""
        if self.reference_logps is not None:
            index = torch.tensor([self._ref_row[id(p)] for p in pairs])
            cached = {"logps": self.reference_logps, "features": self.reference_features}
            return {statistic: {role: values[index].to(self.accelerator.device) for role, values in by_role.items()}
                    for statistic, by_role in cached.items()}
        assert self.reference is not None  # the constructor checked it; only a cache replaces it
        with torch.no_grad(), self.as_scorer(self.reference).active() as ref_model:
            stats = (ref_model(batch, features=self.features) if isinstance(ref_model, SequenceStatsModel)
                     else sequence_stats(ref_model, batch, chunk_size=self.args.chunk_size, features=self.features))
        live = {"logps": stats.logps, "features": stats.features}
        return {statistic: {role: values[layout.rows(role)] for role in layout.roles}
                for statistic, values in live.items() if values is not None}

    def gradient_diagnostics(self) -> dict[str, float]:
        """Gradient-entanglement metrics (``diag/grad_*``, see ``selm.train.diagnostics``) on the
        probe set: the first ``diagnostics_pairs`` training pairs, the same at every step.

        Computed by the main process only (the weights are the same everywhere; nothing here
        runs through the DDP wrapper, so no collective is involved); {} on the others.
        """
        if not self.accelerator.is_main_process:
            return {}
        probe = self.train_pairs[: self.args.diagnostics_pairs]
        stats = pair_gradient_stats(self.policy, probe, self.pad_token_id, chunk_size=self.args.chunk_size,
                                    batch_size=self.args.per_device_eval_batch_size)
        return stats.metrics()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Metrics of the objective on the eval pairs, prefixed ``eval/``."""
        if not self.eval_pairs:
            return {}
        was_training = self.model.training
        self.model.eval()
        records = []
        bs = self.args.per_device_eval_batch_size
        # Each process scores its contiguous shard, in as many forwards as the largest shard needs
        # (DDP may sync buffers in every forward, so the counts must match); padding is dropped.
        n_batches = math.ceil(math.ceil(len(self.eval_pairs) / self.world_size) / bs)
        lo, hi = shard_bounds(len(self.eval_pairs), self.accelerator.process_index, self.world_size)
        for start in range(lo, lo + n_batches * bs, bs):
            pairs = self.eval_pairs[start:min(start + bs, hi)]
            out = self.objective(self.preference_batch(pairs or self.eval_pairs[:1], train=False))
            if pairs:
                records.append((len(pairs), {"loss": float(out.losses.mean()),
                                             **{k: float(v) for k, v in out.metrics.items()}}))
        self.model.train(was_training)
        records = gather_in_order(self.accelerator, records)
        return {f"eval/{k}": v for k, v in _mean_metrics(records).items()}


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The ``checkpoint-N`` folder with the largest N in ``folder`` (None if there is none)."""
    found = [p for p in Path(folder).glob("checkpoint-*[0-9]") if (p / STATE_FILE).is_file()]
    return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None

