"""The systems of `selm bench --online`: a whole online round, sampling to update, timed end to end.

Each side samples responses to the same prompts from the same randomly initialised model, scores
them with the same reward rule (``online_workload``), and trains on them for the same number of
optimizer updates:

- ``selm`` + ``dpo``: selm's round loop (``selm.loop.start_run``, as ``selm run`` starts a run) with
  ``objective: dpo`` and ``sampling.n: 2``: all of a round's prompts sampled at once, judged, paired
  best vs worst, then trained (reference log-probs precomputed at the round start).
- ``trl`` + ``dpo``: TRL's ``OnlineDPOTrainer``: every optimizer step samples 2 responses to a batch
  of prompts, rewards them, runs the reference, and updates.
- ``selm`` + ``grpo``: the loop with ``recipes/grpo.yaml``'s objective (β 0.04, ε 0.2, ``loss_type``
  grpo, group-scaled advantages, reference π0).
- ``trl`` + ``grpo``: TRL's ``GRPOTrainer`` with the same group size, β, ε, ``loss_type`` and
  ``scale_rewards="group"``; one generation batch is a round's prompts × group size, split into
  updates of ``batch_size`` rollouts (``steps_per_generation``), reused ``epochs`` times
  (``num_iterations``).

The first ``warmup_rounds`` rounds (TRL: their number of updates) are run and not timed; the
timed round is the next one. Phases come from wrapping each side's methods (``call_log``):
selm's ``OnlineRun.phase_*`` and its trainer's ``TrainResult`` (reference seconds and train
seconds); TRL's ``_generate``, reward call and no-grad log-prob passes, its update being the rest
of the optimizer steps (the policy forward, loss, backward and optimizer, with TRL's logging).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from selm.bench.call_log import CallLog
from selm.bench.measure import StepClock, peak_rss_bytes
from selm.bench.online_workload import (
    online_model,
    online_prompts,
    online_tokenizer,
    save_model_folder,
    trl_reward,
)
from selm.bench.workloads import SHAPES, ids_to_text

SYSTEMS = ("selm", "trl")
OBJECTIVES = ("dpo", "grpo")
PHASES = ("sample", "judge", "logps", "update", "other")
LEARNING_RATE = 1e-6
DPO_BETA = 0.1
# recipes/grpo.yaml's objective.
GRPO_BETA, GRPO_EPSILON = 0.04, 0.2


@dataclass(frozen=True)
class OnlineSpec:
    """One online measurement.

    Attributes:
        system: ``selm`` or ``trl``.
        objective: ``dpo`` (2 samples per prompt, pairs best vs worst) or ``grpo``.
        shape: a key of ``workloads.SHAPES``.
        prompts: prompts per round.
        samples: responses per prompt (DPO: 2; GRPO: the group size).
        batch_size: per optimizer update: pairs (DPO; TRL: prompts) or rollouts (GRPO).
        max_new_tokens: tokens per response (every response has exactly this many, see ``online_workload``).
        prompt_length: tokens per prompt.
        epochs: GRPO: passes over a round's rollouts (TRL's ``num_iterations``); DPO: 1.
        temperature: sampling temperature (top-p 1, top-k off on both sides).
        warmup_rounds: rounds run before the timed one.
        threads: torch intra-op threads (0: torch's default).
    """

    system: str
    objective: str
    shape: str
    prompts: int = 8
    samples: int = 2
    batch_size: int = 4
    max_new_tokens: int = 32
    prompt_length: int = 32
    epochs: int = 1
    temperature: float = 1.0
    warmup_rounds: int = 1
    threads: int = 0

    @property
    def label(self) -> str:
        return f"{self.system}+online-{self.objective}"

    @property
    def updates(self) -> int:
        """Optimizer updates of one round."""
        examples = self.prompts if self.objective == "dpo" else self.prompts * self.samples * self.epochs
        return examples // self.batch_size

    def check(self) -> None:
        """Raises ValueError for a spec the two sides cannot both run as the same work."""
        if self.system not in SYSTEMS or self.objective not in OBJECTIVES:
            raise ValueError(f"unknown system/objective {self.system}/{self.objective}; available: "
                             f"{', '.join(SYSTEMS)} x {', '.join(OBJECTIVES)}")
        if self.objective == "dpo" and (self.samples != 2 or self.epochs != 1):
            raise ValueError("online DPO: TRL samples 2 responses per prompt and makes one pass: samples 2, epochs 1")
        per_round = self.prompts if self.objective == "dpo" else self.prompts * self.samples
        if per_round % self.batch_size:
            raise ValueError(f"{per_round} {'pairs' if self.objective == 'dpo' else 'rollouts'} a round are not a "
                             f"multiple of batch_size {self.batch_size}")


def _dtype(model: torch.nn.Module) -> str:
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def run_online_system(spec: OnlineSpec) -> dict[str, Any]:
    """Build the model, prompts and reward of ``spec``, run ``warmup_rounds + 1`` rounds, time the last.

    Returns:
        ``seconds`` (the timed round, end to end), ``phases`` (seconds by ``PHASES``; TRL's ``other``
        is None: its rest is in ``update``), the work done in the timed round (``samples``,
        ``sample_lengths`` and ``prompt_lengths`` per sample, ``updates``, ``sequences_per_update``,
        ``generated_tokens``, ``trained_tokens``: prompt + response tokens of every trained
        sequence, once per pass), ``dtype``, ``peak_rss_bytes`` and ``notes``.
    """
    spec.check()
    if spec.threads:
        torch.set_num_threads(spec.threads)
    shape = SHAPES[spec.shape]
    model = online_model(shape)
    tokenizer = online_tokenizer(shape)
    prompts = online_prompts((spec.warmup_rounds + 1) * spec.prompts, spec.prompt_length, shape.vocab_size)
    with tempfile.TemporaryDirectory(prefix="selm-bench-online-") as tmp:
        folder = save_model_folder(model, tokenizer, Path(tmp) / "model")
        if spec.system == "selm":
            del model  # the loop loads π0 from the folder, as `selm run` does
            work = _run_selm(spec, folder, prompts, Path(tmp))
        else:
            work = (_run_trl_dpo if spec.objective == "dpo" else _run_trl_grpo)(spec, model, tokenizer, prompts,
                                                                               Path(tmp))
    return {**work, "label": spec.label, "peak_rss_bytes": peak_rss_bytes()}


# ----- selm: the round loop ------------------------------------------------------------------------

def _write_prompts(path: Path, prompts: list[list[int]]) -> Path:
    path.write_text("".join(json.dumps({"prompt": ids_to_text(p)}) + "\n" for p in prompts))
    return path


def selm_run_config(spec: OnlineSpec, model_folder: Path, train_file: Path, eval_file: Path) -> dict[str, Any]:
    """The ``selm run`` config of ``spec``: its rounds, prompts, sampling, judge, objective and training."""
    objective: dict[str, Any] = (
        {"name": "dpo", "beta": DPO_BETA} if spec.objective == "dpo" else
        {"name": "grpo", "beta": GRPO_BETA, "epsilon_low": GRPO_EPSILON, "epsilon_high": GRPO_EPSILON,
         "loss_type": "grpo"})
    config: dict[str, Any] = {
        "name": f"bench-online-{spec.objective}", "task": None, "model_name_or_path": str(model_folder),
        "rounds": spec.warmup_rounds + 1, "seed": 0,
        "prompts": {"train": str(train_file), "eval": str(eval_file), "per_round": spec.prompts, "num_eval": 1},
        "sampling": {"n": spec.samples, "temperature": spec.temperature, "max_new_tokens": spec.max_new_tokens},
        "judge": {"kind": "function", "callable": "selm.bench.online_workload:score"},
        "objective": objective,
        "train": {"learning_rate": LEARNING_RATE, "per_device_train_batch_size": spec.batch_size,
                  "num_train_epochs": spec.epochs, "lr_scheduler_type": "constant", "warmup_ratio": 0.0,
                  "max_length": spec.prompt_length + spec.max_new_tokens, "max_grad_norm": 1.0, "dtype": "float32"},
        # The held-out evaluation is not part of the timed round: one prompt, one sample.
        "eval": {"samples_per_prompt": 1},
    }
    if spec.objective == "grpo":
        config.update(rollouts={"advantage": "grpo"}, reference="initial")
    return config


def _run_selm(spec: OnlineSpec, folder: Path, prompts: list[list[int]], tmp: Path) -> dict[str, Any]:
    import yaml

    import selm.loop.run as loop_run
    from selm.artifacts import PairRow, RolloutRow, SampleRow, read_rows
    from selm.loop import start_run
    from selm.rundir import RunDir
    from selm.train.trainer import Trainer

    train_file = _write_prompts(tmp / "prompts.jsonl", prompts)
    eval_file = _write_prompts(tmp / "eval.jsonl", online_prompts(1, spec.prompt_length, SHAPES[spec.shape].vocab_size,
                                                                  seed=1))
    recipe = tmp / "online.yaml"
    config = selm_run_config(spec, folder, train_file, eval_file)
    recipe.write_text(yaml.safe_dump(config))
    phases = ["phase_sample", "phase_judge", "phase_pair", "phase_rollout", "phase_train", "phase_evaluate"]
    log = CallLog()
    # Besides the phases: the parts of "other" (trainer set-up, the trained policy's save, DPO's
    # log-prob shift diagnostics), where the loop still has them under these names.
    parts = [name for name in ("_save_trained",) if hasattr(loop_run.OnlineRun, name)]
    with (log.wrapping(loop_run.OnlineRun, [*phases, *parts], {name: lambda args, _: args[0] for name in phases}),
          log.wrapping(Trainer, ["train", "__init__"], {"train": lambda _, result: result}),
          log.wrapping(loop_run, [name for name in ("pair_logps",) if hasattr(loop_run, name)])):
        run_dir = start_run(recipe, [], output=tmp / "run", progress=False)
    k = spec.warmup_rounds + 1

    def call(name: str):
        return next(c for c in log.calls if c.name == name and c.kept == k)

    # The round runs from its sampling to the start of its evaluation (the train phase's bookkeeping included).
    start, end = call("phase_sample").start, call("phase_evaluate").start
    trained = [c.kept for c in log.calls if c.name == "train"][-1]
    phase = {"sample": call("phase_sample").seconds, "judge": call("phase_judge").seconds,
             "logps": trained.reference_seconds, "update": trained.train_seconds - trained.reference_seconds}
    phase["other"] = end - start - sum(phase.values())
    pairing = call("phase_pair" if spec.objective == "dpo" else "phase_rollout").seconds
    other = {"pair_or_rollout_phase": pairing, "trainer_setup": log.seconds(start, end, "__init__"),
             "policy_save": log.seconds(start, end, "_save_trained"),
             "logp_diagnostics": log.seconds(start, end, "pair_logps")}
    other["rest"] = phase["other"] - sum(other.values())
    rd = RunDir(run_dir).round(k)
    samples = [(len(row.prompt_ids), c.num_tokens) for row in read_rows(rd.file("samples.jsonl"), SampleRow)
               for c in row.candidates if c.source is None]
    if spec.objective == "dpo":
        pairs = read_rows(rd.file("pairs.jsonl"), PairRow)
        sequences = 2 * len(pairs)
        trained_tokens = sum(2 * len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)
    else:
        rollouts = read_rows(rd.file("rollouts.jsonl"), RolloutRow)
        sequences = spec.epochs * len(rollouts)
        trained_tokens = spec.epochs * sum(len(r.prompt_ids) + len(r.token_ids) for r in rollouts)
    return {"seconds": end - start, "phases": phase, "dtype": config["train"]["dtype"], **_work(samples, trained.global_step, sequences,
                                                                                 trained_tokens),
            "notes": {"other": other}}


def _work(samples: list[tuple[int, int]], updates: int, sequences: int, trained_tokens: int) -> dict[str, Any]:
    """The work of a timed round from its (prompt length, response length) samples and its training."""
    return {"samples": len(samples), "prompt_lengths": [p for p, _ in samples], "sample_lengths": [n for _, n in samples],
            "generated_tokens": sum(n for _, n in samples), "updates": updates,
            "sequences_per_update": sequences / max(updates, 1), "trained_tokens": trained_tokens}


# ----- TRL: its online trainers ---------------------------------------------------------------------

def _trl_common(spec: OnlineSpec, out: Path) -> dict[str, Any]:
    """Settings both TRL trainers share: the bench's optimizer and schedule, fp32, no checkpointing, TRL's
    sampling at the same temperature with top-p 1 and top-k off."""
    return dict(output_dir=str(out), max_steps=(spec.warmup_rounds + 1) * spec.updates, learning_rate=LEARNING_RATE,
                lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=1.0, temperature=spec.temperature,
                top_k=0, top_p=1.0, bf16=False, activation_checkpointing=False, use_cpu=not torch.cuda.is_available(),
                report_to="none", save_strategy="no", logging_steps=10_000, disable_tqdm=True,
                dataloader_num_workers=0, seed=0)


def _timed_window(clock: StepClock, warm_updates: int) -> tuple[float, float, int]:
    """(start, end, updates) of the timed round: from the last warm-up update to the last update."""
    start = clock.stamps[warm_updates - 1] if warm_updates else clock.started
    return start, clock.stamps[-1], len(clock.stamps) - warm_updates


def _trl_result(spec: OnlineSpec, trainer: Any, log: CallLog, clock: StepClock, names: dict[str, str],
                sequences_per_sample: int) -> dict[str, Any]:
    start, end, updates = _timed_window(clock, spec.warmup_rounds * spec.updates)
    phase: dict[str, float | None] = {
        "sample": log.seconds(start, end, names["sample"]), "judge": log.seconds(start, end, names["judge"]),
        "logps": log.seconds(start, end, names["logps"], grad=False)}
    phase["update"] = end - start - sum(v for v in phase.values() if v is not None)
    phase["other"] = None
    samples = [pair for c in log.between(start, end, names["sample"]) for pair in zip(*c.kept)]
    trained_tokens = sequences_per_sample * sum(p + n for p, n in samples)
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {"seconds": end - start, "phases": phase, "dtype": _dtype(model),
            **_work(samples, updates, sequences_per_sample * len(samples), trained_tokens),
            "notes": {"update": "the rest of the optimizer steps: policy forward, loss, backward, optimizer, logging",
                      "reference_model": trainer.ref_model is not None,
                      "optimizer": type(getattr(trainer.optimizer, "optimizer", trainer.optimizer)).__name__,
                      "fused_adamw": bool(trainer.optimizer.param_groups[0].get("fused")),
                      "activation_checkpointing": bool(getattr(model, "is_gradient_checkpointing", False))}}


def _run_trl_dpo(spec: OnlineSpec, model: torch.nn.Module, tokenizer: Any, prompts: list[list[int]], tmp: Path
                 ) -> dict[str, Any]:
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from datasets import Dataset
    from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer

    config = OnlineDPOConfig(**_trl_common(spec, tmp / "trl"), per_device_train_batch_size=spec.batch_size,
                             beta=DPO_BETA, loss_type="sigmoid", max_new_tokens=spec.max_new_tokens,
                             max_length=spec.prompt_length + spec.max_new_tokens, gradient_checkpointing=False)
    trainer = OnlineDPOTrainer(model=model, reward_funcs=trl_reward, args=config, processing_class=tokenizer,
                               train_dataset=Dataset.from_dict({"prompt": [ids_to_text(p) for p in prompts]}))
    # _generate returns (prompt_ids, prompt_mask, completion_ids, completion_mask, ...): keep the lengths.
    keep = {"_generate": lambda _, out: (out[1].sum(1).tolist(), out[3].sum(1).tolist())}
    log, clock = CallLog(), StepClock()
    with log.wrapping(trainer, ["_generate", "_calculate_rewards_from_functions", "_forward"], keep), clock.running():
        trainer.train()
    return _trl_result(spec, trainer, log, clock, {"sample": "_generate", "judge": "_calculate_rewards_from_functions",
                                                   "logps": "_forward"}, sequences_per_sample=1)


def _run_trl_grpo(spec: OnlineSpec, model: torch.nn.Module, tokenizer: Any, prompts: list[list[int]], tmp: Path
                  ) -> dict[str, Any]:
    os.environ.setdefault("TQDM_DISABLE", "1")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    config = GRPOConfig(**_trl_common(spec, tmp / "trl"), per_device_train_batch_size=spec.batch_size,
                        gradient_accumulation_steps=1, steps_per_generation=spec.prompts * spec.samples // spec.batch_size,
                        num_generations=spec.samples, num_iterations=spec.epochs, beta=GRPO_BETA, loss_type="grpo",
                        epsilon=GRPO_EPSILON, scale_rewards="group",
                        use_bias_correction_kl=False,  # selm's KL term has no importance weight
                        max_completion_length=spec.max_new_tokens, gradient_checkpointing=False)
    trainer = GRPOTrainer(model=model, reward_funcs=trl_reward, args=config, processing_class=tokenizer,
                          train_dataset=Dataset.from_dict({"prompt": [ids_to_text(p) for p in prompts]}))
    # _generate returns (prompt_ids, completion_ids, ...) as lists of token-id lists.
    keep = {"_generate": lambda _, out: ([len(x) for x in out[0]], [len(x) for x in out[1]])}
    log, clock = CallLog(), StepClock()
    names = ["_generate", "_calculate_rewards", "_get_per_token_logps_and_entropies"]
    with log.wrapping(trainer, names, keep), clock.running():
        trainer.train()
    return _trl_result(spec, trainer, log, clock, {"sample": "_generate", "judge": "_calculate_rewards",
                                                   "logps": "_get_per_token_logps_and_entropies"},
                       sequences_per_sample=spec.epochs)
