"""The systems under test: each trains the same model on the same batch for a few steps.

- ``selm``: the real ``PreferenceTrainer.train()`` (DPO, reference log-probs precomputed, the
  chunked log-prob engine), full fine-tuning or LoRA, padded or padding-free.
- ``trl``: TRL's ``DPOTrainer`` with its best settings on this hardware: precomputed reference
  log-probs, fp32 (its default is bf16, ~5× slower on an AVX2 CPU), no activation checkpointing
  (its default is on), the Trainer's fused AdamW.
- ``naive``: DPO as first written: full [N, T, V] logits for the policy and a reference forward
  every step, padded batch. The floor that shows where the gains come from.
- ``sft``: one plain ``model(ids, labels=...)`` step on the same tokens: one forward and one
  backward, the least a preference step can cost.

With ``objective="grpo"`` (``selm`` and ``trl`` only) the systems run GRPO's update on fixed,
already judged rollouts (generation excluded): ``prompts`` prompts × ``group_size`` responses,
the same rollouts every step, micro-batches of 4 accumulated into one optimizer step.

- ``selm``: the real ``RolloutTrainer.train()`` (``grpo`` objective, ``grpo`` advantages, the
  sampler's per-token log-probs attached as selm's samplers record them, a frozen reference copy).
  It scores a round's rollouts once before its first step (``prepare``: the reference pass and the
  advantages); here a round is one step's rollouts, so each step is charged one warm ``prepare``
  of them (timed after training) on top of its optimizer-step interval.
- ``trl``: TRL's ``GRPOTrainer`` with ``rollout_func`` (TRL's hook that replaces generation)
  returning the fixed completions and a reward function returning the fixed rewards; TRL then
  scores them inside every step as usual (reference pass, group advantages) and runs its update.

Both: β = 0.04 (k3 KL to the reference, so both run a reference pass per rollout), loss_type
``grpo``, ε = 0.2, num_iterations 1 (one update per rollout: TRL uses the detached current
log-probs as π_old, selm the recorded ones: the same values), group-scaled advantages.

Every system uses AdamW (fused, no weight decay), lr 1e-6 constant, gradient clipping at 1.0, DPO with β = 0.1,
and float32 weights. Each runs in its own process (see ``worker``), so its peak memory is its own.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from selm.bench.measure import StepClock, median, peak_rss_bytes
from selm.bench.workloads import (
    PAD_ID,
    SHAPES,
    LengthProfile,
    build_model,
    ids_to_text,
    make_pairs,
    make_rollouts,
    num_parameters,
    sequence_lengths,
    word_tokenizer,
)
from selm.optim import adamw, optimizer_step

SYSTEMS = ("selm", "trl", "naive", "sft")
OBJECTIVES = ("dpo", "grpo")
LEARNING_RATE = 1e-6
BETA = 0.1
LORA_R, LORA_ALPHA = 16, 32
# GRPO: the paper's β (TRL's default is 0: no reference at all), its clip range, and the micro-batch.
GRPO_BETA, GRPO_EPSILON = 0.04, 0.2
GRPO_MICRO_BATCH = 4


@dataclass(frozen=True)
class SystemSpec:
    """One measurement: which system, on which model shape, with which options.

    Attributes:
        system: one of ``SYSTEMS``.
        shape: a key of ``workloads.SHAPES``.
        lora: train LoRA adapters (r 16, alpha 32, all linear layers) instead of every weight.
        padding_free: selm only: pack the batch into one row without padding.
        batch_pairs: preference pairs per step (2 sequences each); DPO only.
        warmup: steps run before timing starts.
        steps: timed steps.
        threads: torch intra-op threads (0: torch's default).
        objective: ``dpo`` (pairs) or ``grpo`` (rollouts; ``selm`` and ``trl`` only, no LoRA).
        prompts: GRPO: prompts per optimizer step.
        group_size: GRPO: responses per prompt (TRL's ``num_generations``).
    """

    system: str
    shape: str
    lora: bool = False
    padding_free: bool = False
    batch_pairs: int = 2
    warmup: int = 1
    steps: int = 3
    threads: int = 0
    objective: str = "dpo"
    prompts: int = 2
    group_size: int = 4

    @property
    def label(self) -> str:
        extras = [x for x, on in (("grpo", self.objective == "grpo"), ("lora", self.lora),
                                  ("padding-free", self.padding_free)) if on]
        return "+".join([self.system, *extras])


@dataclass
class SystemResult:
    """What one system measured; times in seconds, memory in bytes."""

    spec: SystemSpec
    step_seconds: list[float]
    tokens_per_step: int
    padded_tokens_per_step: int
    parameters: int
    trainable_parameters: int
    peak_rss_bytes: int
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def median_step_seconds(self) -> float:
        return median(self.step_seconds)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_per_step / self.median_step_seconds

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.spec.label, "median_step_seconds": self.median_step_seconds,
                "tokens_per_second": self.tokens_per_second}


def _trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())


def _lora_config():
    from peft import LoraConfig

    return LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules="all-linear",
                      task_type="CAUSAL_LM")


def _run_selm(spec: SystemSpec, model: torch.nn.Module, pairs: list, clock: StepClock) -> dict[str, Any]:
    from selm.engine import ReferencePolicy
    from selm.modeling.lora import apply_lora
    from selm.objectives import get_objective
    from selm.train.config import LoraConfig, TrainingArguments
    from selm.train.trainer import PreferenceTrainer

    options: dict[str, Any] = {}
    if "padding_free" in TrainingArguments.model_fields:
        options["padding_free"] = spec.padding_free
    elif spec.padding_free:
        raise RuntimeError("this selm has no TrainingArguments.padding_free")
    with tempfile.TemporaryDirectory(prefix="selm-bench-") as cache:
        args = TrainingArguments(
            learning_rate=LEARNING_RATE, max_steps=spec.warmup + spec.steps,
            per_device_train_batch_size=spec.batch_pairs, lr_scheduler_type="constant", warmup_ratio=0.0,
            reference_cache_dir=cache, **options)
        if spec.lora:
            model = apply_lora(model, LoraConfig(r=LORA_R, alpha=LORA_ALPHA))
            reference = ReferencePolicy(model, disable_adapters=True)
        else:
            # As `selm train` does: a frozen copy, dropped by the trainer once its log-probs are cached.
            reference = ReferencePolicy(copy.deepcopy(model).eval().requires_grad_(False))
        trainer = PreferenceTrainer(model, get_objective("dpo", beta=BETA), args, pairs, PAD_ID,
                                    reference=reference, progress=False)
        del reference
        with clock.running():
            trainer.train()
    # The trainer falls back to padding when the model cannot keep packed sequences apart.
    packing = getattr(trainer, "packing", None)
    return {"trainable_parameters": _trainable(model), "packed": packing is not None,
            "packing": None if packing is None else str(packing)}


def _dpo_step_naive(policy: torch.nn.Module, reference: torch.nn.Module, batch, objective, b: int) -> torch.Tensor:
    from selm.engine import naive_sequence_logps
    from selm.objectives import PreferenceBatch

    logps = naive_sequence_logps(policy, batch)
    with torch.no_grad():
        ref_logps = naive_sequence_logps(reference, batch)
    out = objective(PreferenceBatch(policy_chosen_logps=logps[:b], policy_rejected_logps=logps[b:],
                                    reference_chosen_logps=ref_logps[:b], reference_rejected_logps=ref_logps[b:]))
    return out.losses.mean()


def _run_plain_loop(spec: SystemSpec, model: torch.nn.Module, pairs: list, clock: StepClock) -> dict[str, Any]:
    """The naive DPO loop or the SFT loop: collate once, then step the same batch."""
    from selm.data import collate_preference_batch
    from selm.objectives import get_objective

    batch = collate_preference_batch(pairs, PAD_ID)
    reference = copy.deepcopy(model).eval().requires_grad_(False) if spec.system == "naive" else None
    objective = get_objective("dpo", beta=BETA)
    labels = batch.input_ids.masked_fill(~batch.response_mask, -100)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = adamw(params, lr=LEARNING_RATE, fused_device=params[0].device)
    model.train()
    with clock.running():
        for _ in range(spec.warmup + spec.steps):
            if reference is not None:
                loss = _dpo_step_naive(model, reference, batch, objective, len(pairs))
            else:
                loss = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                             position_ids=batch.position_ids, labels=labels, use_cache=False).loss
            loss.backward()
            optimizer_step(optimizer, None, params, max_grad_norm=1.0)
    return {"trainable_parameters": _trainable(model)}


def _run_trl(spec: SystemSpec, model: torch.nn.Module, pairs: list, clock: StepClock) -> dict[str, Any]:
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    shape = SHAPES[spec.shape]
    data = Dataset.from_dict({
        "prompt": [ids_to_text(p.prompt_ids) for p in pairs],
        "chosen": [" " + ids_to_text(p.chosen_ids) for p in pairs],
        "rejected": [" " + ids_to_text(p.rejected_ids) for p in pairs],
    })
    with tempfile.TemporaryDirectory(prefix="selm-bench-trl-") as out:
        config = DPOConfig(
            output_dir=out, per_device_train_batch_size=spec.batch_pairs, max_steps=spec.warmup + spec.steps,
            learning_rate=LEARNING_RATE, lr_scheduler_type="constant", warmup_steps=0, beta=BETA,
            max_grad_norm=1.0, bf16=False, activation_checkpointing=False, use_cpu=True,
            precompute_ref_log_probs=True, max_length=1024, report_to="none", save_strategy="no",
            logging_steps=10_000, disable_tqdm=True, dataloader_num_workers=0, seed=0)
        trainer = DPOTrainer(model=model, args=config, train_dataset=data, processing_class=word_tokenizer(shape.vocab_size),
                             peft_config=_lora_config() if spec.lora else None)
        tokens = int(sum(len(r["prompt_ids"]) + len(r[k]) for r in trainer.train_dataset for k in ("chosen_ids", "rejected_ids")))
        if tokens != sum(sequence_lengths(pairs)):
            raise RuntimeError(f"TRL tokenized {tokens} tokens, selm has {sum(sequence_lengths(pairs))}")
        with clock.running():
            trainer.train()
        checkpointing = bool(getattr(trainer.model, "is_gradient_checkpointing", False))
        return {"trainable_parameters": _trainable(trainer.model), "optimizer": type(trainer.optimizer.optimizer).__name__
                if hasattr(trainer.optimizer, "optimizer") else type(trainer.optimizer).__name__,
                "fused_adamw": bool(trainer.optimizer.param_groups[0].get("fused")), "activation_checkpointing": checkpointing}


# ----- GRPO: the update on fixed rollouts ----------------------------------------------------------

def _grpo_accumulation(spec: SystemSpec) -> int:
    rollouts = spec.prompts * spec.group_size
    if rollouts % GRPO_MICRO_BATCH:
        raise ValueError(f"GRPO: prompts x group_size ({rollouts}) must be a multiple of {GRPO_MICRO_BATCH}")
    return rollouts // GRPO_MICRO_BATCH


def _rollout_keys(rollouts: list) -> list[str]:
    """``"group/j"``: the j-th response of a group, the name both systems' advantages are compared under."""
    seen: Counter[int] = Counter()
    keys = []
    for r in rollouts:
        keys.append(f"{r.group}/{seen[r.group]}")
        seen[r.group] += 1
    return keys


def _run_selm_grpo(spec: SystemSpec, model: torch.nn.Module, rollouts: list, clock: StepClock) -> dict[str, Any]:
    from selm.engine import ReferencePolicy, score_tokens
    from selm.objectives import get_objective
    from selm.objectives.advantages import get_advantage_estimator
    from selm.train.config import TrainingArguments
    from selm.train.rollout_trainer import RolloutTrainer

    options: dict[str, Any] = {}
    if "padding_free" in TrainingArguments.model_fields:
        options["padding_free"] = spec.padding_free
    elif spec.padding_free:
        raise RuntimeError("this selm has no TrainingArguments.padding_free")
    args = TrainingArguments(
        learning_rate=LEARNING_RATE, max_steps=spec.warmup + spec.steps, per_device_train_batch_size=GRPO_MICRO_BATCH,
        gradient_accumulation_steps=_grpo_accumulation(spec), lr_scheduler_type="constant", warmup_ratio=0.0, **options)
    # selm's samplers record the sampling policy's per-token log-probs; here they come from the same weights.
    recorded = score_tokens(model, [(r.prompt_ids, r.response_ids) for r in rollouts], PAD_ID).logps
    rollouts = [dataclasses.replace(r, sampling_token_logps=lp.tolist()) for r, lp in zip(rollouts, recorded)]
    reference = ReferencePolicy(copy.deepcopy(model).eval().requires_grad_(False))
    objective = get_objective("grpo", beta=GRPO_BETA, epsilon_low=GRPO_EPSILON, epsilon_high=GRPO_EPSILON,
                              loss_type="grpo")
    trainer = RolloutTrainer(model, objective, args, rollouts, PAD_ID, estimator=get_advantage_estimator("grpo"),
                             reference=reference, progress=False)
    del reference
    prepare = trainer.prepare

    def prepare_then_restart_clock() -> None:
        # The round-start scoring is charged separately (warm, below): the first interval starts after it.
        prepare()
        clock.started = time.perf_counter()

    trainer.prepare = prepare_then_restart_clock  # type: ignore[method-assign]
    with clock.running():
        trainer.train()
    # The same round-start work again, warm: the reference pass over these rollouts and their advantages.
    start = time.perf_counter()
    prepare()
    round_start = time.perf_counter() - start
    packing = getattr(trainer, "packing", None)
    advantages = trainer.fixed["advantages"][:, 0].tolist()
    return {"trainable_parameters": _trainable(model), "packed": packing is not None,
            "packing": None if packing is None else str(packing), "round_start_seconds": round_start,
            "advantages": dict(zip(_rollout_keys(rollouts), advantages))}


def _run_trl_grpo(spec: SystemSpec, model: torch.nn.Module, rollouts: list, clock: StepClock) -> dict[str, Any]:
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is marked experimental
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    shape = SHAPES[spec.shape]
    groups: dict[str, tuple[list[int], list[list[int]], list[str]]] = {}
    for r, key in zip(rollouts, _rollout_keys(rollouts)):
        prompt_ids, completions, keys = groups.setdefault(ids_to_text(r.prompt_ids), (r.prompt_ids, [], []))
        completions.append(r.response_ids)
        keys.append(key)
    rewards = {tuple(r.response_ids): r.reward for r in rollouts}
    last_keys: list[str] = []

    def rollout_func(prompts: list[str], trainer: Any) -> dict[str, Any]:
        """TRL's generation hook: the fixed completions, each prompt's j-th occurrence gets its j-th."""
        seen: Counter[str] = Counter()
        prompt_ids, completion_ids = [], []
        last_keys.clear()
        for text in prompts:
            ids, completions, keys = groups[text]
            j = seen[text] % len(completions)
            seen[text] += 1
            prompt_ids.append(list(ids))
            completion_ids.append(list(completions[j]))
            last_keys.append(keys[j])
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}

    def fixed_reward(completion_ids: list[list[int]], **kwargs: Any) -> list[float]:
        return [rewards[tuple(ids)] for ids in completion_ids]

    expected_tokens = sum(len(r.prompt_ids) + len(r.response_ids) for r in rollouts)
    scoring_seconds: list[float] = []
    advantages: dict[str, float] = {}
    data = Dataset.from_dict({"prompt": list(groups)})
    with tempfile.TemporaryDirectory(prefix="selm-bench-trl-") as out:
        # TRL builds its reference model from the policy's path: save the random weights there.
        model_dir = Path(out) / "model"
        model.save_pretrained(model_dir)
        model.config._name_or_path = str(model_dir)
        config = GRPOConfig(
            output_dir=out, per_device_train_batch_size=GRPO_MICRO_BATCH,
            gradient_accumulation_steps=_grpo_accumulation(spec), num_generations=spec.group_size,
            max_steps=spec.warmup + spec.steps, learning_rate=LEARNING_RATE, lr_scheduler_type="constant",
            warmup_steps=0, beta=GRPO_BETA, loss_type="grpo", epsilon=GRPO_EPSILON, num_iterations=1,
            scale_rewards="group", use_bias_correction_kl=False,  # selm's KL term has no importance weight
            max_completion_length=max(len(r.response_ids) for r in rollouts), max_grad_norm=1.0, bf16=False,
            activation_checkpointing=False, use_cpu=True, report_to="none", save_strategy="no",
            logging_steps=10_000, disable_tqdm=True, dataloader_num_workers=0, seed=0)
        trainer = GRPOTrainer(model=model, reward_funcs=fixed_reward, args=config, train_dataset=data,
                              processing_class=word_tokenizer(shape.vocab_size), rollout_func=rollout_func)
        score = trainer._generate_and_score_completions

        def timed_score(inputs: Any) -> dict[str, Any]:
            start = time.perf_counter()
            scored = score(inputs)
            scoring_seconds.append(time.perf_counter() - start)
            tokens = int(scored["prompt_mask"].sum() + scored["completion_mask"].sum())
            if tokens != expected_tokens:
                raise RuntimeError(f"TRL scored {tokens} tokens in a generation batch, selm has {expected_tokens}")
            if not advantages:
                advantages.update(zip(last_keys, scored["advantages"].tolist()))
            return scored

        trainer._generate_and_score_completions = timed_score  # type: ignore[method-assign]
        with clock.running():
            trainer.train()
        if len(scoring_seconds) != spec.warmup + spec.steps:
            raise RuntimeError(f"expected one generation batch per optimizer step, TRL scored {len(scoring_seconds)}")
        optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
        return {"trainable_parameters": _trainable(trainer.model), "optimizer": type(optimizer).__name__,
                "fused_adamw": bool(trainer.optimizer.param_groups[0].get("fused")),
                "activation_checkpointing": bool(getattr(trainer.model, "is_gradient_checkpointing", False)),
                "reference_model": trainer.ref_model is not None, "scoring_seconds": scoring_seconds[spec.warmup:],
                "advantages": advantages}


def _run_grpo(spec: SystemSpec, model: torch.nn.Module, clock: StepClock) -> tuple[dict[str, Any], list]:
    shape = SHAPES[spec.shape]
    rollouts = make_rollouts(spec.prompts, spec.group_size, shape.vocab_size, LengthProfile())
    runner = _run_selm_grpo if spec.system == "selm" else _run_trl_grpo
    return runner(spec, model, rollouts, clock), rollouts


def _grpo_result(spec: SystemSpec, notes: dict[str, Any], rollouts: list, clock: StepClock, parameters: int
                 ) -> SystemResult:
    """A step = the optimizer-step interval plus, for selm, its share of the round-start scoring.

    ``update_seconds`` is the update alone on both sides (TRL's interval minus its scoring call).
    """
    intervals = clock.step_seconds(spec.warmup)
    if spec.system == "selm":
        steps = [s + notes["round_start_seconds"] for s in intervals]
        notes["update_seconds"] = intervals
    else:
        steps = intervals
        notes["update_seconds"] = [s - t for s, t in zip(intervals, notes["scoring_seconds"])]
    lengths = [len(r.prompt_ids) + len(r.response_ids) for r in rollouts]
    notes["response_tokens_per_step"] = sum(len(r.response_ids) for r in rollouts)
    notes["median_update_seconds"] = median(notes["update_seconds"])
    trainable = notes.pop("trainable_parameters")
    return SystemResult(spec=spec, step_seconds=steps, tokens_per_step=sum(lengths),
                        padded_tokens_per_step=len(lengths) * max(lengths), parameters=parameters,
                        trainable_parameters=trainable, peak_rss_bytes=peak_rss_bytes(), notes=notes)


def run_system(spec: SystemSpec) -> SystemResult:
    """Build the model and batch of ``spec``, train ``warmup + steps`` steps and time them."""
    if spec.system not in SYSTEMS:
        raise ValueError(f"unknown system {spec.system!r}; available: {', '.join(SYSTEMS)}")
    if spec.objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {spec.objective!r}; available: {', '.join(OBJECTIVES)}")
    if spec.padding_free and spec.system != "selm":
        raise ValueError("padding_free applies to the selm system only")
    if spec.lora and spec.system in ("naive", "sft"):
        raise ValueError(f"the {spec.system} system trains every weight (no LoRA)")
    if spec.objective == "grpo" and (spec.system not in ("selm", "trl") or spec.lora):
        raise ValueError("the grpo objective is measured for the selm and trl systems, full fine-tuning only")
    if spec.threads:
        torch.set_num_threads(spec.threads)
    shape = SHAPES[spec.shape]
    model = build_model(shape)
    parameters = num_parameters(model)
    if spec.objective == "grpo":
        clock = StepClock()
        notes, rollouts = _run_grpo(spec, model, clock)
        return _grpo_result(spec, notes, rollouts, clock, parameters)
    pairs = make_pairs(spec.batch_pairs, shape.vocab_size, LengthProfile())
    lengths = sequence_lengths(pairs)
    clock = StepClock()
    runner = {"selm": _run_selm, "trl": _run_trl}.get(spec.system, _run_plain_loop)
    notes = runner(spec, model, pairs, clock)
    trainable = notes.pop("trainable_parameters")
    return SystemResult(spec=spec, step_seconds=clock.step_seconds(spec.warmup), tokens_per_step=sum(lengths),
                        padded_tokens_per_step=len(lengths) * max(lengths), parameters=parameters,
                        trainable_parameters=trainable, peak_rss_bytes=peak_rss_bytes(), notes=notes)
