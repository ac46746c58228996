"""The online round loop of SELM and its family, in one file.

Round 0 evaluates the starting policy π0. Then for k = 1..N, with π_{k−1} the round-start policy:

    prompts_k  = this round's chunk of training prompts (or a fresh draw)
    sample     : n responses per prompt from π_{k−1} (+ the exploration response y0: its greedy
                 answer for SELM, an extra sample for XPO)
    judge      : every candidate scored by the judge
    pair       : best-vs-worst (or another strategy) pairs, ties dropped
    train      : the objective against the reference (round start, π0, an EMA, or none)
    evaluate   : held-out prompts → judge / gold reward, win rates, KL(π_k ‖ π0), length, ...

Each phase writes one artifact into ``rounds/NN/`` and is marked done in the round's manifest, so
``--resume`` redoes nothing finished; a cut training phase continues from its last checkpoint.
Every random choice is seeded from (seed, round, phase), so a resumed run reproduces an
uninterrupted one.

Under ``torchrun`` / ``accelerate launch`` every process runs the loop: sampling, judging and
evaluation split the prompts into contiguous shards and gather the results in order on every
process; training is data-parallel through the trainer; only the main process writes the run
directory, and the others read its artifacts after a barrier. Sampling is seeded per fixed block
of prompt indices, so the samples do not depend on the number of processes.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import resource
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from selm.config import dump_config, load_config
from selm.data import (
    TokenizedPair,
    load_preference_data,
    load_prompts,
    tokenize_prompt,
    tokenize_response,
)
from selm.distributed import gather_in_order, make_accelerator, map_sharded, run_on_main
from selm.engine import ReferencePolicy, collate_sequences, sequence_stats
from selm.errors import ConfigError, UserError
from selm.eval import distinct_n, kl_estimate, mean_std, win_rate
from selm.io import atomic_write_text, inject_fault, read_jsonl, write_jsonl
from selm.judges import Judge, build_judge, register_gold_reward
from selm.loop.config import QUICKSTART_TRAIN, RunConfig
from selm.loop.pairing import round_pairs
from selm.modeling.loading import (
    check_weights,
    load_causal_lm,
    load_tokenizer,
    model_fingerprint,
)
from selm.modeling.lora import apply_lora
from selm.objectives import build_objective
from selm.objectives.base import PAIR_VALUE_FIELDS
from selm.rundir import RoundDir, RunDir
from selm.sampling import Completion, SamplingParams, SamplingProgress, build_sampler
from selm.sampling.drift import logprob_drift
from selm.tasks import get_task
from selm.tasks.sources import resolve_model_source
from selm.train.diagnostics import GRAD_KEYS, logp_shift_metrics
from selm.train.reference_cache import compute_reference_logps
from selm.train.trainer import PreferenceTrainer, latest_checkpoint
from selm.train.warmup import ensure_warmup

TIMING_PREFIXES = ("time/", "tokens_per_s/", "peak_memory")
# Keys of the step log that are not round metrics: a timing, and a running count reported on its own.
NOT_ROUND_METRICS = frozenset({"tokens_per_s", "nonfinite_steps"})


def _derived_seed(seed: int, round_index: int, phase: str) -> int:
    return (seed * 1_000_003 + round_index * 7919 + sum(map(ord, phase)) * 131) % (2**31 - 1)


def _peak_memory_gb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class OnlineRun:
    """Executes (or resumes) an online run in ``run_dir`` as ``config`` says."""

    def __init__(self, config: RunConfig, run_dir: RunDir, progress: bool = True, accelerator: Any = None):
        self.config = config
        self.run_dir = run_dir
        self.accelerator = accelerator or make_accelerator()
        self.is_main = self.accelerator.is_main_process
        self.progress = progress and self.is_main
        self.objective = build_objective(config.objective)
        self.task = get_task(config.task) if config.task else None
        if self.task is not None:
            register_gold_reward(self.task.name, self.task.gold_reward)
        # Built-in models (policy, judges) are built and cached on first use: by the main process alone.
        with self.accelerator.main_process_first():
            self.model_source = resolve_model_source(config.model_name_or_path)
            tokenizer_source = (resolve_model_source(config.tokenizer_name_or_path) if config.tokenizer_name_or_path
                                else self.model_source)
            if config.warmup_sft is not None:
                self.model_source = str(ensure_warmup(self.task, self.model_source, config.warmup_sft,
                                                      trust_remote_code=config.trust_remote_code,
                                                      allow_pickle=config.allow_pickle, progress=self.progress))
            self.judge: Judge = build_judge(config.judge)
            self.eval_judge: Judge = build_judge(config.eval.judge) if config.eval.judge else self.judge
        self.tokenizer = load_tokenizer(tokenizer_source, trust_remote_code=config.trust_remote_code)
        check_weights(self.model_source, config.allow_pickle)  # pickle-only weights: refused before any work
        self.train_prompts, self.eval_prompts = self._load_prompts()
        self._model: torch.nn.Module | None = None
        self._model_round: int | None = None
        self._initial: torch.nn.Module | None = None

    # ----- prompts -----------------------------------------------------------------------------

    def _load_prompts(self) -> tuple[list[Any], list[Any]]:
        c = self.config
        p = c.prompts
        self.dataset_responses: list[list[Any]] | None = None
        if p.dataset_responses:
            rows = load_preference_data(p.train)
            train = [row.prompt for row in rows]
            self.dataset_responses = [[row.chosen, row.rejected] for row in rows]
        elif p.train is not None:
            train = load_prompts(p.train, field=p.field)
        else:
            train = self.task.train_prompts(c.rounds * p.per_round if p.schedule == "chunks" else 4 * p.per_round, c.seed)
        evals = load_prompts(p.eval, field=p.field)[: p.num_eval] if p.eval is not None else self.task.eval_prompts(p.num_eval)
        if p.schedule == "chunks" and len(train) < c.rounds * p.per_round:
            raise ConfigError(f"prompts.train: {len(train)} prompts, but {c.rounds} rounds × prompts.per_round "
                              f"{p.per_round} need {c.rounds * p.per_round} (or set prompts.schedule: resample)")
        if not evals:
            raise ConfigError("prompts.eval: no held-out prompts")
        return train, evals

    def round_prompt_indices(self, k: int) -> list[int]:
        """Indices (into the training prompts) of round k: the k-th contiguous chunk, or a seeded draw."""
        per = self.config.prompts.per_round
        if self.config.prompts.schedule == "chunks":
            return list(range((k - 1) * per, k * per))
        rng = random.Random(_derived_seed(self.config.seed, k, "prompts"))
        return rng.sample(range(len(self.train_prompts)), min(per, len(self.train_prompts)))

    def round_prompts(self, k: int) -> list[Any]:
        """Round k's training prompts."""
        return [self.train_prompts[i] for i in self.round_prompt_indices(k)]

    # ----- models ------------------------------------------------------------------------------

    def _policy_dir(self, k: int) -> Path:
        return self.run_dir.round(k).file("policy")

    def policy(self, k: int) -> torch.nn.Module:
        """The policy at the end of round k (round 0: π0), kept in memory between phases."""
        if self._model_round == k and self._model is not None:
            return self._model
        self._model = None
        c = self.config
        if c.lora is None and k > 0:
            model = load_causal_lm(str(self._policy_dir(k)), dtype=c.train.dtype, allow_pickle=False)
        else:
            model = load_causal_lm(self.model_source, dtype=c.train.dtype, trust_remote_code=c.trust_remote_code,
                                   allow_pickle=c.allow_pickle)
            if c.lora is not None:
                torch.manual_seed(_derived_seed(c.seed, 0, "lora"))
                if k == 0:
                    model = apply_lora(model, c.lora)
                else:
                    from peft import PeftModel

                    model = PeftModel.from_pretrained(model, self._policy_dir(k), is_trainable=True)
        model = model.to(self.accelerator.device)
        self._model, self._model_round = model, k
        return model

    def initial_reference(self) -> ReferencePolicy:
        """π0 as a reference: the LoRA policy with adapters disabled, or a frozen copy of π0."""
        if self.config.lora is not None:
            return ReferencePolicy(self.policy(self._model_round or 0), disable_adapters=True)
        if self._initial is None:
            self._initial = load_causal_lm(self.model_source, dtype=self.config.train.dtype,
                                           trust_remote_code=self.config.trust_remote_code,
                                           allow_pickle=self.config.allow_pickle).eval().requires_grad_(False)
            self._initial = self._initial.to(self.accelerator.device)
        return ReferencePolicy(self._initial)

    def reference_for_round(self, k: int, policy: torch.nn.Module) -> ReferencePolicy | None:
        """π_ref of round k as configured (``policy`` holds the round-start weights)."""
        mode = self.config.reference
        live = self.objective.needs_live_reference
        if mode == "none":
            return None
        if mode == "initial":
            return self.initial_reference()
        if mode == "round_start":
            # Reference log-probs are precomputed before the first step, while the policy still
            # holds the round-start weights: no copy is needed unless the objective needs the
            # reference live at every step (TDPO's per-token KL).
            if live or not self.config.train.precompute_reference:
                return ReferencePolicy(copy.deepcopy(policy).eval().requires_grad_(False))
            return ReferencePolicy(policy)
        return ReferencePolicy(self._ema_reference(k, policy))

    def _ema_reference(self, k: int, policy: torch.nn.Module) -> torch.nn.Module:
        """π_ref,k = d·π_ref,k−1 + (1−d)·π_{k−1}, with π_ref,1 = π0; saved per round for resume."""
        from safetensors.torch import load_file, save_file

        path = self.run_dir.round(k).file("reference_ema.safetensors")
        ref = copy.deepcopy(policy).eval().requires_grad_(False)
        if path.is_file():
            ref.load_state_dict(load_file(path), strict=False)
            return ref
        if k > 1:
            previous = load_file(self.run_dir.round(k - 1).file("reference_ema.safetensors"))
            d = self.config.reference_ema_decay
            state = {name: d * previous[name].to(t) + (1 - d) * t for name, t in ref.state_dict().items() if name in previous}
            ref.load_state_dict(state, strict=False)
        if self.is_main:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            save_file({n: t.detach().cpu().contiguous() for n, t in ref.state_dict().items()}, str(tmp))
            os.replace(tmp, path)
        return ref

    # ----- phases ------------------------------------------------------------------------------

    def _sampler(self, model: torch.nn.Module, k: int):
        """A sampler for ``model``, the policy at the end of round k."""
        options: dict[str, Any] = {}
        if self.config.sampling.backend == "vllm":
            # The engine reloads the round's saved policy (weights or adapter) in place; π0 of
            # round 0 is saved once under the run's cache.
            options = {"policy_path": self._policy_dir(k) if k > 0 else None,
                       "workdir": self.run_dir.path / "cache" / "vllm"}
        # One sampler call per block of prompts (see _generate): the bar there counts blocks.
        return build_sampler(self.config.sampling.backend, model=model, tokenizer=self.tokenizer,
                             batch_size=self.config.sampling.batch_size, progress=False, **options)

    def _generate(self, sampler: Any, prompt_ids: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        """``sampler.generate`` over the processes, with samples that do not depend on their number.

        A sampler's batch shares one random stream, so a prompt's samples depend on its batch
        mates. The prompts are therefore cut into fixed blocks of consecutive indices, one sampler
        batch each, every block seeded from its index; the processes take contiguous runs of blocks.
        """
        rows_per_prompt = 1 if params.greedy else params.n
        size = max(1, self.config.sampling.batch_size // rows_per_prompt)

        def run(starts: list[int]) -> list[list[list[Completion]]]:
            total = sum(len(prompt_ids[start:start + size]) for start in starts) * params.n
            progress = SamplingProgress(tqdm(total=total, desc="sampling", unit="seq", disable=not self.progress))
            try:
                return [sampler.generate(prompt_ids[start:start + size],
                                         replace(params, seed=_derived_seed(params.seed, start // size, "block")),
                                         progress=progress)
                        for start in starts]
            finally:
                progress.bar.close()

        blocks = map_sharded(self.accelerator, list(range(0, len(prompt_ids), size)), run)
        return [completions for block in blocks for completions in block]

    def _write_jsonl(self, path: Path, rows: list[dict[str, Any]]) -> None:
        """Write an artifact from the main process; the others read it after the phase's barrier."""
        if self.is_main:
            write_jsonl(path, rows)

    def _params(self, n: int, temperature: float, seed: int) -> SamplingParams:
        s = self.config.sampling
        return SamplingParams(n=n, temperature=temperature, top_p=s.top_p, top_k=s.top_k,
                              max_new_tokens=s.max_new_tokens, seed=seed,
                              stop_token_ids=[self.tokenizer.eos_token_id])

    @staticmethod
    def _completion_row(c: Any) -> dict[str, Any]:
        return {"text": c.text, "token_ids": list(c.token_ids), "logprob": float(c.logprob),
                "num_tokens": int(c.num_tokens), "finished": bool(c.finished)}

    def _dataset_candidate(self, prompt: Any, response: Any) -> dict[str, Any]:
        """A dataset response as a candidate: tokenized like training data, never sampled."""
        ids = tokenize_response(self.tokenizer, prompt, response)
        text = response[-1]["content"] if isinstance(response, list) else response
        return {"text": text, "token_ids": ids, "logprob": None, "num_tokens": len(ids), "finished": True,
                "source": "dataset"}

    def phase_sample(self, k: int, rd: RoundDir) -> dict[str, Any]:
        c = self.config
        indices = self.round_prompt_indices(k)
        prompts = [self.train_prompts[i] for i in indices]
        prompt_ids = [tokenize_prompt(self.tokenizer, p) for p in prompts]
        policy = self.policy(k - 1)
        sampler = self._sampler(policy, k - 1)
        seed = _derived_seed(c.seed, k, "sample")
        outputs = self._generate(sampler, prompt_ids, self._params(c.sampling.n, c.sampling.temperature, seed))
        # vLLM's kernels are not the trainer's: log how far its log-probs are from ours.
        drift = (logprob_drift(policy, self.tokenizer.pad_token_id, prompt_ids, outputs, chunk_size=c.train.chunk_size)
                 if c.sampling.backend == "vllm" else {})
        explore: list[Any] = [None] * len(prompts)
        mode = c.explore_mode
        if mode != "none":
            temperature = 0.0 if mode == "greedy" else c.sampling.temperature
            extra = self._generate(sampler, prompt_ids, self._params(1, temperature, seed + 1))
            explore = [self._completion_row(o[0]) for o in extra]
        rows = [{"prompt_index": i, "prompt": p, "prompt_ids": ids,
                 "candidates": [self._completion_row(x) for x in outs], "explore": e}
                for i, (p, ids, outs, e) in enumerate(zip(prompts, prompt_ids, outputs, explore))]
        if self.dataset_responses is not None:
            for row, source in zip(rows, indices):
                row["candidates"] += [self._dataset_candidate(row["prompt"], r) for r in self.dataset_responses[source]]
        self._write_jsonl(rd.file("samples.jsonl"), rows)
        tokens = sum(x["num_tokens"] for r in rows for x in r["candidates"] if x["logprob"] is not None)
        return {"artifact": "samples.jsonl", "tokens": tokens, "seed": seed,
                "policy_fingerprint": model_fingerprint(policy), "drift": drift}

    def phase_judge(self, k: int, rd: RoundDir) -> dict[str, Any]:
        samples = read_jsonl(rd.file("samples.jsonl"))
        scores = map_sharded(self.accelerator, samples, lambda shard: self.judge.rank_scores_batch(
            [s["prompt"] for s in shard], [[x["text"] for x in s["candidates"]] for s in shard]))
        self._write_jsonl(rd.file("scores.jsonl"), [{"prompt_index": s["prompt_index"], "scores": sc}
                                               for s, sc in zip(samples, scores)])
        return {"artifact": "scores.jsonl"}

    def phase_pair(self, k: int, rd: RoundDir) -> dict[str, Any]:
        c = self.config
        samples = read_jsonl(rd.file("samples.jsonl"))
        scores = [r["scores"] for r in read_jsonl(rd.file("scores.jsonl"))]
        self_scores = self._self_scores(k, samples) if c.self_judge is not None else None
        pairs, extras, stats = round_pairs(c, self.objective, samples, scores, _derived_seed(c.seed, k, "pair"),
                                           self_scores=self_scores)
        rows = []
        for pair, extra in zip(pairs, extras):
            s = samples[pair.prompt_index]
            chosen, rejected = s["candidates"][pair.chosen_index], s["candidates"][pair.rejected_index]
            rows.append({"prompt_index": pair.prompt_index, "prompt": s["prompt"], "prompt_ids": s["prompt_ids"],
                         "chosen": chosen["text"], "rejected": rejected["text"],
                         "chosen_ids": chosen["token_ids"], "rejected_ids": rejected["token_ids"],
                         "explore": s["explore"]["text"] if s["explore"] else None,
                         "explore_ids": s["explore"]["token_ids"] if s["explore"] else None,
                         "chosen_score": pair.chosen_score, "rejected_score": pair.rejected_score,
                         "margin": pair.margin, **extra})
        self._write_jsonl(rd.file("pairs.jsonl"), rows)
        return {"artifact": "pairs.jsonl", "stats": stats}

    @torch.no_grad()
    def _self_scores(self, k: int, samples: list[dict[str, Any]]) -> list[list[float]]:
        """OSP's self-judgement: every candidate's mean token log-prob under the round-start policy π_{k−1}."""
        model = self.policy(k - 1)
        was_training = model.training
        model.eval()
        sequences = [(s["prompt_ids"], x["token_ids"]) for s in samples for x in s["candidates"]]
        flat: list[float] = []
        device = next(model.parameters()).device
        for start in range(0, len(sequences), 64):
            batch = collate_sequences(sequences[start:start + 64], self.tokenizer.pad_token_id).to(device)
            stats = sequence_stats(model, batch, chunk_size=self.config.train.chunk_size)
            flat.extend((stats.logps / stats.lengths.clamp_min(1)).tolist())
        model.train(was_training)
        it = iter(flat)
        return [[next(it) for _ in s["candidates"]] for s in samples]

    def phase_train(self, k: int, rd: RoundDir) -> dict[str, Any]:
        c = self.config
        # The objective's state (LCPO's reliability) as round k−1 left it: what an uninterrupted
        # run holds in memory, and the only copy after a resume.
        state = self.run_dir.round(k - 1).manifest["phases"].get("train", {}).get("objective_state") if k > 1 else None
        if state:
            self.objective.load_state_dict(state)
        rows = read_jsonl(rd.file("pairs.jsonl"))
        # Pairs keep the sampled token ids: no re-tokenization, so the trainer scores exactly the
        # tokens the sampler produced.
        pairs = [TokenizedPair(index=i, prompt_ids=r["prompt_ids"], chosen_ids=r["chosen_ids"],
                               rejected_ids=r["rejected_ids"], explore_ids=r["explore_ids"],
                               online_ids=r.get("online_ids"),
                               extras={key: r[key] for key in PAIR_VALUE_FIELDS if key in r})
                 for i, r in enumerate(rows)]
        policy_dir = rd.file("policy")
        if not pairs:
            if self.is_main:
                warnings.warn(f"round {k}: no preference pairs (all ties?); the policy is carried over unchanged")
            self._save_policy(self.policy(k - 1), policy_dir)
            self._model_round = k
            return {"artifact": "policy", "train": {}, "tokens": 0, "objective_state": self.objective.state_dict()}
        torch.manual_seed(_derived_seed(c.seed, k, "train"))
        policy = self.policy(k - 1)
        self._model_round = None  # the in-memory weights are about to change
        reference = self.reference_for_round(k, policy)
        args = c.train.model_copy(update={"seed": _derived_seed(c.seed, k, "train-order"),
                                          "reference_cache_dir": str(self.run_dir.path / "cache" / "reference_logps")})
        ckpt_dir = rd.file("train")
        # Round-start log-probs of the pairs, for the chosen-fell / rejected-rose diagnostics: the
        # precomputed round_start reference log-probs are exactly these, else one no-grad pass now.
        live = self.objective.needs_live_reference
        reuse_reference = c.reference == "round_start" and c.train.precompute_reference and not live
        before = None if reuse_reference else self._pair_logps(policy, pairs)
        trainer = PreferenceTrainer(policy, self.objective, args, pairs, self.tokenizer.pad_token_id,
                                    reference=reference, output_dir=ckpt_dir, accelerator=self.accelerator,
                                    progress=self.progress)
        result = trainer.train(resume_from_checkpoint=latest_checkpoint(ckpt_dir), log_file=rd.file("train_log.jsonl"))
        before = trainer.reference_logps if before is None else before
        self._model = trainer.policy
        # The accelerator keeps what it prepared: drop this round's wrapper and optimizer.
        del trainer
        self.accelerator.free_memory()
        self._save_policy(self._model, policy_dir)
        self._model_round = k
        if self.is_main:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        # Every logged training metric, the objective's own (sail/*, lcpo/*, ...) included, as
        # its mean over the round's logging steps.
        metrics = {f"train/{key}": v for key, v in result.metrics.items()
                   if key not in NOT_ROUND_METRICS and not key.startswith(TIMING_PREFIXES)}
        metrics["train/steps"] = result.global_step
        metrics["time/reference_s"] = result.reference_seconds
        metrics["train/nonfinite_steps"] = result.nonfinite_steps
        metrics.update(logp_shift_metrics(before, self._pair_logps(self._model, pairs)))
        # Gradient-entanglement rows of the step log (train.diagnostics_steps), averaged over the round.
        diag_rows = [h for h in result.log_history if GRAD_KEYS[0] in h]
        metrics.update({key: sum(h[key] for h in diag_rows) / len(diag_rows) for key in GRAD_KEYS if diag_rows})
        tokens = sum(len(p.chosen_ids) + len(p.rejected_ids) for p in pairs) * max(1, round(c.train.num_train_epochs))
        return {"artifact": "policy", "train": metrics, "tokens": tokens, "seed": args.seed,
                "reference": c.reference, "policy_fingerprint": model_fingerprint(self._model),
                "objective_state": self.objective.state_dict()}

    def _pair_logps(self, model: torch.nn.Module, pairs: list[TokenizedPair]) -> dict[str, torch.Tensor]:
        """{"chosen": [P], "rejected": [P]} summed log-probs of the pairs under ``model`` (no grad)."""
        return compute_reference_logps(ReferencePolicy(model), pairs, self.tokenizer.pad_token_id,
                                       batch_size=self.config.train.per_device_eval_batch_size,
                                       chunk_size=self.config.train.chunk_size, device=self.accelerator.device,
                                       progress=False)

    def _save_policy(self, model: torch.nn.Module, path: Path) -> None:
        if not self.is_main:
            return
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, safe_serialization=True)
        if self.config.lora is None:
            self.tokenizer.save_pretrained(tmp)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)

    def phase_evaluate(self, k: int, rd: RoundDir) -> dict[str, Any]:
        c = self.config
        prompt_ids = [tokenize_prompt(self.tokenizer, p) for p in self.eval_prompts]
        model = self.policy(k)
        outputs = self._generate(self._sampler(model, k), prompt_ids, self._params(
            c.eval.samples_per_prompt, c.eval.temperature, _derived_seed(c.seed, 0, "eval")))
        flat = [(i, j, o) for i, outs in enumerate(outputs) for j, o in enumerate(outs)]
        judge = self.eval_judge
        # A pairwise judge has no pointwise reward: it compares with earlier rounds' responses.
        baselines = {key: read_jsonl(self.run_dir.round(r).file("eval.jsonl"))
                     for key, r in (("win_vs_initial", 0), ("win_vs_previous", k - 1)) if judge.is_pairwise and k > 0}

        def score(shard: list[int]) -> list[dict[str, Any]]:
            """Reward, gold reward, wins and log π0 of the flat samples numbered ``shard``."""
            prompts = [self.eval_prompts[flat[n][0]] for n in shard]
            texts = [flat[n][2].text for n in shard]
            rewards = [None] * len(texts) if judge.is_pairwise else judge.score(prompts, texts)
            gold = self.task.gold_reward(prompts, texts) if self.task is not None else [None] * len(texts)
            wins = {key: judge.compare(prompts, texts, [rows[n]["response"] for n in shard])
                    for key, rows in baselines.items()}
            initial = ([flat[n][2].logprob for n in shard] if k == 0 else self._initial_logps(
                [(prompt_ids[flat[n][0]], list(flat[n][2].token_ids)) for n in shard]))
            return [{"reward": r, "gold_reward": g, "initial_logprob": lp,
                     **{key: values[m] for key, values in wins.items()}}
                    for m, (r, g, lp) in enumerate(zip(rewards, gold, initial))]

        scored = map_sharded(self.accelerator, list(range(len(flat))), score)
        rows = [{"prompt_index": i, "sample_index": j, "prompt": self.eval_prompts[i], "response": o.text,
                 "num_tokens": o.num_tokens, "finished": o.finished, "reward": sc["reward"],
                 "gold_reward": sc["gold_reward"], "logprob": o.logprob, "initial_logprob": sc["initial_logprob"],
                 "token_ids": list(o.token_ids), **{key: sc[key] for key in baselines}}
                for (i, j, o), sc in zip(flat, scored)]
        tokens = sum(o.num_tokens for _, _, o in flat)
        if c.eval.best_of_n:
            # Written before eval.jsonl, the phase's artifact: a finished phase has both.
            tokens += self._best_of_n(model, k, prompt_ids, rd.file("best_of_n.jsonl"))
        self._write_jsonl(rd.file("eval.jsonl"), rows)
        return {"artifact": "eval.jsonl", "tokens": tokens}

    def _best_of_n(self, model: torch.nn.Module, k: int, prompt_ids: list[list[int]], path: Path) -> int:
        """Best-of-N baseline: N samples per held-out prompt, the eval judge's favourite kept.

        Writes one row per prompt (the picked response, its judge reward (None for a pairwise
        judge, whose rank score is no reward) and gold reward) to ``path``; returns the tokens sampled.
        """
        c = self.config
        n = c.eval.best_of_n
        outputs = self._generate(self._sampler(model, k), prompt_ids,
                                 self._params(n, c.eval.temperature, _derived_seed(c.seed, 0, "best-of-n")))
        judge = self.eval_judge

        def pick(shard: list[int]) -> list[dict[str, Any]]:
            prompts = [self.eval_prompts[i] for i in shard]
            candidates = [[o.text for o in outputs[i]] for i in shard]
            scores = judge.rank_scores_batch(prompts, candidates)
            best = [max(range(len(s)), key=s.__getitem__) for s in scores]
            texts = [cands[b] for cands, b in zip(candidates, best)]
            gold = self.task.gold_reward(prompts, texts) if self.task is not None else [None] * len(texts)
            return [{"prompt_index": i, "response": t, "num_tokens": outputs[i][b].num_tokens, "n": n,
                     "reward": None if judge.is_pairwise else s[b], "gold_reward": g}
                    for i, t, b, s, g in zip(shard, texts, best, scores, gold)]

        self._write_jsonl(path, map_sharded(self.accelerator, list(range(len(prompt_ids))), pick))
        return sum(o.num_tokens for outs in outputs for o in outs)

    @torch.no_grad()
    def _initial_logps(self, sequences: list[tuple[list[int], list[int]]]) -> list[float]:
        """log π0(y | x) of each (prompt ids, response ids), batched through the chunked engine."""
        out: list[float] = []
        reference = self.initial_reference()
        device = next(reference.model.parameters()).device
        with reference.active() as model:
            model.eval()
            for start in range(0, len(sequences), 64):
                batch = collate_sequences(sequences[start:start + 64], self.tokenizer.pad_token_id).to(device)
                out.extend(sequence_stats(model, batch, chunk_size=self.config.train.chunk_size).logps.tolist())
        return out

    # ----- metrics -----------------------------------------------------------------------------

    def round_metrics(self, k: int) -> dict[str, Any]:
        """The metrics row of round k, from its artifacts and manifest (never from memory)."""
        rd = self.run_dir.round(k)
        rows = read_jsonl(rd.file("eval.jsonl"))
        rewards = [r["reward"] for r in rows if r["reward"] is not None]
        m: dict[str, Any] = {"round": k}
        m["reward_mean"], m["reward_std"] = mean_std(rewards) if rewards else (None, None)
        if rows and rows[0]["gold_reward"] is not None:
            m["gold_reward_mean"], m["gold_reward_std"] = mean_std([r["gold_reward"] for r in rows])
        m["kl"] = kl_estimate([r["logprob"] for r in rows], [r["initial_logprob"] for r in rows])
        if k == 0:
            m["win_rate_vs_initial"] = m["win_rate_vs_previous"] = None
        elif "win_vs_initial" in rows[0]:
            m["win_rate_vs_initial"] = mean_std([r["win_vs_initial"] for r in rows])[0]
            m["win_rate_vs_previous"] = mean_std([r["win_vs_previous"] for r in rows])[0]
        else:
            initial = read_jsonl(self.run_dir.round(0).file("eval.jsonl"))
            previous = read_jsonl(self.run_dir.round(k - 1).file("eval.jsonl"))
            m["win_rate_vs_initial"] = win_rate(rewards, [r["reward"] for r in initial])
            m["win_rate_vs_previous"] = win_rate(rewards, [r["reward"] for r in previous])
        m["length_mean"] = mean_std([r["num_tokens"] for r in rows])[0]
        m["eos_rate"] = sum(r["finished"] for r in rows) / max(len(rows), 1)
        m["distinct_2"] = distinct_n([r["token_ids"] for r in rows], 2)
        phases = rd.manifest["phases"]
        if k > 0:
            m.update(phases["pair"].get("stats", {}))
            m.update(phases["sample"].get("drift", {}))
            m.update(phases["train"].get("train", {}))
        for phase, key in (("sample", "sample"), ("judge", "judge"), ("train", "train"), ("evaluate", "eval")):
            if phase in phases:
                seconds = phases[phase].get("seconds", math.nan)
                m[f"time/{key}_s"] = seconds
                if "tokens" in phases[phase] and seconds:
                    m[f"tokens_per_s/{key}"] = phases[phase]["tokens"] / seconds
        m["peak_memory_gb"] = rd.manifest.get("peak_memory_gb")
        best = read_jsonl(rd.file("best_of_n.jsonl")) if rd.file("best_of_n.jsonl").is_file() else []
        if best:
            m["eval/best_of_n"] = best[0]["n"]
            for key, column in (("eval/best_of_n_reward", "reward"), ("eval/best_of_n_gold_reward", "gold_reward")):
                values = [r[column] for r in best if r[column] is not None]
                m[key] = mean_std(values)[0] if values else None
        return m

    def _summary_line(self, m: dict[str, Any], first: dict[str, Any]) -> str:
        parts = [f"round {m['round']}/{self.config.rounds}"]
        if "gold_reward_mean" in m:
            parts.append(f"gold {m['gold_reward_mean']:.3f} ({m['gold_reward_mean'] - first['gold_reward_mean']:+.3f} vs round 0)")
        if m["reward_mean"] is not None:
            parts.append(f"reward {m['reward_mean']:.3f}")
        parts.append(f"kl {m['kl']:.2f}")
        if m.get("win_rate_vs_initial") is not None:
            parts.append(f"win vs π0 {m['win_rate_vs_initial']:.2f}")
        if "pairs/count" in m:
            parts.append(f"pairs {m['pairs/count']:.0f}")
        if "train/rewards/accuracies" in m:
            parts.append(f"train acc {m['train/rewards/accuracies']:.2f}")
        parts.append(f"len {m['length_mean']:.1f}")
        return "  ".join(parts)

    # ----- the loop ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _phase(self, rd: RoundDir, name: str) -> Iterator[dict[str, Any]]:
        info: dict[str, Any] = {}
        start = time.perf_counter()
        if self.progress:
            tqdm.write(f"[round {rd.round}] {name}")
        yield info
        inject_fault(f"{name}:{rd.round}")  # test-only hook (selm.io.inject_fault): no-op unless set
        artifact = info.pop("artifact")
        if self.is_main:
            rd.mark_done(name, artifact, seconds=time.perf_counter() - start, **info)
        inject_fault(f"{name}:{rd.round}:done")
        # The next phase reads this one's artifact on every process.
        self.accelerator.wait_for_everyone()

    def execute(self) -> Path:
        """Run every round not yet finished, then write metrics.jsonl and the report."""
        from selm.report import build_report

        phases = {"sample": self.phase_sample, "judge": self.phase_judge, "pair": self.phase_pair,
                  "train": self.phase_train, "evaluate": self.phase_evaluate}
        rows: list[dict[str, Any]] = []
        for k in range(self.config.rounds + 1):
            rd = self.run_dir.round(k)
            names = ("evaluate",) if k == 0 else tuple(phases)
            # The main process reads the manifest (and may invalidate a phase whose artifact changed).
            todo = run_on_main(self.accelerator, lambda: [n for n in names if not rd.is_done(n)])
            for name in todo:
                torch.manual_seed(_derived_seed(self.config.seed, k, name))
                with self._phase(rd, name) as info:
                    info.update(phases[name](k, rd))
            peak = max(gather_in_order(self.accelerator, [_peak_memory_gb()]))
            if self.is_main:
                rd.set_info(peak_memory_gb=max(rd.manifest.get("peak_memory_gb") or 0.0, peak))
                rows.append(self.round_metrics(k))
                self.run_dir.write_metrics(rows)
                if self.progress:
                    tqdm.write(self._summary_line(rows[-1], rows[0]))
        if self.is_main:
            build_report(self.run_dir.path)
        self.accelerator.wait_for_everyone()
        return self.run_dir.path


def start_run(recipe: str | Path | None, overrides: list[str] | None = None, output: str | Path | None = None,
              progress: bool = True) -> Path:
    """Start a new run from a recipe (None: the quickstart). Returns the run directory."""
    config = load_config(RunConfig, recipe, overrides, defaults={"train": dict(QUICKSTART_TRAIN)})
    accelerator = make_accelerator()

    def choose() -> Path:
        """The run directory, its default name from the main process's clock; it must hold no run."""
        path = Path(output) if output is not None else Path("runs") / f"{config.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        if RunDir(path).config_path.exists():
            raise UserError(f"{path}: already holds a run; continue it with `selm run --resume {path}`")
        return path

    run_dir = RunDir(run_on_main(accelerator, choose))
    # model/judge/data errors: before the run dir exists
    runner = OnlineRun(config, run_dir, progress=progress, accelerator=accelerator)
    run_on_main(accelerator, run_dir.check_writable)
    if runner.is_main:
        atomic_write_text(run_dir.config_path, dump_config(config))
    return runner.execute()


def resume_run(run_dir: str | Path, progress: bool = True) -> Path:
    """Continue a run from its config.yaml; finished phases are not redone."""
    rd = RunDir(Path(run_dir))
    if not rd.config_path.is_file():
        raise UserError(f"{rd.path}: no config.yaml here; not a selm run directory")
    config = load_config(RunConfig, rd.config_path)
    accelerator = make_accelerator()
    run_on_main(accelerator, rd.check_writable)
    return OnlineRun(config, rd, progress=progress, accelerator=accelerator).execute()
