"""The online round loop of SELM and its family.

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

This file is the loop itself; its parts live beside it: ``setup`` (objective, task, judges,
prompts), ``policies`` (the round policies and references), ``sampling``, ``pairing``,
``training``, ``evaluation``, ``scoring``; a round's metrics row is ``selm.eval.round_metrics``.
"""

from __future__ import annotations

import contextlib
import resource
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from selm.artifacts import JsonRow, PairRow, RolloutRow, SampleRow, ScoreRow, read_rows, write_rows
from selm.config import dump_config, load_config
from selm.distributed import gather_in_order, make_accelerator, map_sharded, run_on_main
from selm.errors import UserError
from selm.eval import keys
from selm.eval.keys import REFUSAL_RATE, TIMING_PREFIXES
from selm.eval.refusal import refusal_rate
from selm.eval.round_metrics import read_round_metrics
from selm.eval.summary import summary_line
from selm.io import atomic_write_text, inject_fault
from selm.loop.config import RunConfig
from selm.loop.evaluation import HeldOutEvaluation, judge_reliability, unseen_mass
from selm.loop.features import RunAutoencoder
from selm.loop.pair_rules import split_by_score_gap
from selm.loop.pairing import pair_rows, round_pairs
from selm.loop.policies import RoundPolicies
from selm.loop.prompts import prompt_token_ids
from selm.loop.rollout_rules import DynamicSampling, informative_groups
from selm.loop.rollouts import rollout_rows, tokenized_rollouts, with_prefix_rewards
from selm.loop.sampling import BlockSampler, dataset_candidate, sampled_candidate
from selm.loop.scoring import ensemble_scores, pair_logps, self_scores
from selm.loop.seeds import derived_seed
from selm.loop.setup import RunParts, assemble_run
from selm.loop.training import round_train_metrics, tokenized_pairs
from selm.rundir import RoundDir, RunDir
from selm.sampling.drift import logprob_drift
from selm.train.rollout_trainer import RolloutTrainer
from selm.train.trainer import PreferenceTrainer, latest_checkpoint

__all__ = ["TIMING_PREFIXES", "OnlineRun", "resume_run", "start_run"]


def _peak_memory_gb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class OnlineRun:
    """Executes (or resumes) an online run in ``run_dir`` as ``config`` says.

    ``parts`` (see :func:`selm.loop.setup.assemble_run`) are built from ``config`` when not given.
    """

    def __init__(self, config: RunConfig, run_dir: RunDir, progress: bool = True, accelerator: Any = None,
                 parts: RunParts | None = None):
        self.config = config
        self.run_dir = run_dir
        self.accelerator = accelerator or make_accelerator()
        self.is_main = self.accelerator.is_main_process
        self.progress = progress and self.is_main
        self.parts = parts or assemble_run(config, self.accelerator, self.progress)
        self.objective = self.parts.objective
        self.tokenizer = self.parts.tokenizer
        self.prompts = self.parts.prompts
        self.policies = RoundPolicies(config, self.parts.model_source, self.tokenizer, run_dir, self.accelerator.device,
                                      self.is_main, live_reference=self.objective.needs_live_reference)
        if config.reference_mode == "soup":  # a soup of mismatched models is refused before the run starts
            self.policies.soup_reference()
        self.sampling = BlockSampler(config, self.tokenizer, self.accelerator, run_dir, self.progress)
        self.evaluation = HeldOutEvaluation(config, self.prompts.eval, self.parts.eval_judge, self.parts.task,
                                            self.sampling, self.policies, run_dir, self.accelerator)
        self.autoencoder = RunAutoencoder(config, run_dir, self.accelerator, self.progress)

    def _write(self, path: Path, rows: Sequence[JsonRow]) -> None:
        """Write an artifact from the main process; the others read it after the phase's barrier."""
        if self.is_main:
            write_rows(path, rows)

    # ----- the phases ----------------------------------------------------------------------------

    def phase_sample(self, k: int, rd: RoundDir) -> dict[str, Any]:
        seed = derived_seed(self.config.seed, k, "sample")
        rows, drift, truncated = self._sample_rows(k, self.prompts.indices(k), seed)
        self._write(rd.file("samples.jsonl"), rows)
        return {"artifact": "samples.jsonl", "tokens": sum(x.num_tokens for r in rows for x in r.candidates if x.sampled),
                "seed": seed, "policy_fingerprint": rows[0].weights if rows else None, "drift": drift,
                "stats": {keys.PROMPTS_TRUNCATED: truncated}}

    def _sample_rows(self, k: int, indices: list[int], seed: int) -> tuple[list[SampleRow], dict[str, float], int]:
        """The sample rows of training prompts ``indices`` from π_{k−1}, each stamped with those
        weights' fingerprint; the drift of a separate sampling engine's log-probs from the
        trainer's ({} for the trainer's own); how many prompts lost their start to the budget."""
        c = self.config
        prompts = [self.prompts.train[i] for i in indices]
        prompt_ids, truncated = prompt_token_ids(self.tokenizer, prompts, c.prompt_budget)
        policy = self.policies.policy(k - 1)
        weights = self.policies.fingerprint(k - 1)
        sampler = self.sampling.backend(policy, self.policies.saved_path(k - 1))
        la = c.sampling.linear_alignment
        aligned = (self.sampling.principled_ids(prompts, la.principle), la.alignment) if la is not None else None
        tree = c.sampling.tree.shape if c.sampling.tree is not None else None
        outputs = self.sampling.generate(sampler, prompt_ids, self.sampling.params(c.sampling.n, c.sampling.temperature,
                                                                                   seed), aligned, tree)
        # A backend with its own kernels (vLLM): log how far its log-probs are from the trainer's.
        drift = (logprob_drift(policy, self.tokenizer.pad_token_id, prompt_ids, outputs, chunk_size=c.train.chunk_size)
                 if sampler.separate_engine else {})
        explore: list[Any] = [None] * len(prompts)
        if c.explore_mode != "none":
            temperature = 0.0 if c.explore_mode == "greedy" else c.sampling.temperature
            extra = self.sampling.generate(sampler, prompt_ids, self.sampling.params(1, temperature, seed + 1))
            explore = [sampled_candidate(o[0]) for o in extra]
        # RL's importance ratio reuses the sampler's per-token log-probs when it ran these weights.
        keep = c.rollouts_in_round(k) and not sampler.separate_engine
        dataset = self.prompts.dataset_responses

        def others(source: int, prompt: Any) -> list[Any]:
            """The prompt's dataset responses, then (AIHF) its demonstration, last."""
            found = [dataset_candidate(self.tokenizer, prompt, r) for r in dataset[source]] if dataset is not None else []
            if c.demonstrations is not None:
                found.append(dataset_candidate(self.tokenizer, prompt, self.prompts.demonstration(source, self.parts.task),
                                               source="demonstration"))
            return found
        rows = [SampleRow(i, prompt, ids, [sampled_candidate(x, keep) for x in outs] + others(source, prompt), y0,
                          weights)
                for i, (source, prompt, ids, outs, y0) in enumerate(zip(indices, prompts, prompt_ids, outputs, explore))]
        return rows, drift, truncated

    def phase_judge(self, k: int, rd: RoundDir) -> dict[str, Any]:
        samples = read_rows(rd.file("samples.jsonl"), SampleRow)
        judge = self.parts.judge
        vectors, stats = None, {}
        # A remote judge keeps its answers as they arrive (one file per process: each judges its
        # own shard), so a phase cut by a failure continues on resume instead of starting over.
        with judge.keeping_answers(rd.file(f"judge_answers.{self.accelerator.process_index}.jsonl")):
            if getattr(judge, "is_vector", False):
                vectors = self._sharded(samples, judge.reward_vectors_batch)
                scores = [[sum(v) / len(v) for v in candidates] for candidates in vectors]
            elif hasattr(judge, "member_scores_batch"):  # an ensemble: log its members' means and spread
                scores, stats = ensemble_scores(self._sharded(samples, lambda p, c: [judge.member_scores_batch(p, c)]))
            else:
                scores = self._judge(samples)
        self._write(rd.file("scores.jsonl"), [ScoreRow(s.prompt_index, sc, v) for s, sc, v in
                                              zip(samples, scores, vectors or [None] * len(samples))])
        return {"artifact": "scores.jsonl", "stats": stats}

    def _sharded(self, samples: list[SampleRow], score: Any) -> list[Any]:
        """``score(prompts, candidate texts)`` over the processes' shards of ``samples``, gathered in order."""
        return map_sharded(self.accelerator, samples, lambda shard: score(
            [s.prompt for s in shard], [[x.text for x in s.candidates] for s in shard]))

    def _score_sharded(self, prompts: list[Any], responses: list[str]) -> list[float]:
        """The judge's pointwise score of each (prompt, response), sharded over the processes."""
        return map_sharded(self.accelerator, list(zip(prompts, responses)), lambda shard: self.parts.judge.score(
            [p for p, _ in shard], [r for _, r in shard]))

    def _judge(self, samples: list[SampleRow]) -> list[list[float]]:
        """The judge's score of every candidate of every sample row, sharded over the processes."""
        return self._sharded(samples, self.parts.judge.rank_scores_batch)

    def phase_pair(self, k: int, rd: RoundDir) -> dict[str, Any]:
        c = self.config
        samples = read_rows(rd.file("samples.jsonl"), SampleRow)
        scores = [r.scores for r in read_rows(rd.file("scores.jsonl"), ScoreRow)]
        # OSP: the round-start policy ranks its own candidates.
        own = (self_scores(self.policies.policy(k - 1), samples, self.tokenizer.pad_token_id, c.train.chunk_size)
               if c.self_judge is not None else None)
        stats_mpo: dict[str, Any] = {}
        if c.mpo_stage(k) == "dpo":
            samples, scores, stats_mpo = self._mpo_split(samples, scores, "easy")
        pairs, values, stats = round_pairs(c, c.objective_for_round(k), samples, scores,
                                           derived_seed(c.seed, k, "pair"), self_scores=own)
        stats = {**stats, **stats_mpo}
        self._write(rd.file("pairs.jsonl"), pair_rows(samples, pairs, values))
        return {"artifact": "pairs.jsonl", "stats": stats}

    def phase_rollout(self, k: int, rd: RoundDir) -> dict[str, Any]:
        c = self.config
        samples = read_rows(rd.file("samples.jsonl"), SampleRow)
        judged = read_rows(rd.file("scores.jsonl"), ScoreRow)
        scores = [r.scores for r in judged]
        vectors = [r.vectors for r in judged] if judged and judged[0].vectors is not None else None
        stats: dict[str, Any] = {}
        if c.mpo_stage(k) == "rl":
            samples, scores, stats = self._mpo_split(samples, scores, "difficult")
        if c.rollouts.dynamic_sampling:
            samples, scores, stats = self._informative_groups(k, samples, scores)
        if self.parts.judge.is_pairwise:
            # A pairwise judge's rank score is a soft Copeland count in [0, K−1]: the within-group
            # win rate (selm.objectives.advantages.win_rate_rewards) is that count ÷ (K − 1).
            scores = [[x / max(len(sc) - 1, 1) for x in sc] for sc in scores]
        rows, rollout_stats = rollout_rows(c.rollouts, samples, scores, c.sampling.max_new_tokens,
                                           derived_seed(c.seed, k, "rollout"), vectors)
        if "prefix_rewards" in c.objective_for_round(k).requires:  # GFlowNet fine-tuning: every prefix judged
            rows = with_prefix_rewards(rows, [samples[r.prompt_index].prompt for r in rows], self.tokenizer,
                                       self._score_sharded)
            rollout_stats["rollouts/prefixes_judged"] = sum(len(r.token_ids) for r in rows)
        self._write(rd.file("rollouts.jsonl"), rows)
        return {"artifact": "rollouts.jsonl", "stats": {**rollout_stats, **stats}}

    def _informative_groups(self, k: int, samples: list[SampleRow], scores: list[list[float]]
                            ) -> tuple[list[SampleRow], list[list[float]], dict[str, Any]]:
        """DAPO's dynamic sampling: keep the prompts whose rewards differ, drawing, sampling and
        judging more prompts while fewer than the round's ``prompts.per_round`` are kept."""
        plan = DynamicSampling(len(samples), self.config.rollouts.max_resample_rounds)
        kept = [(s, sc) for s, sc, ok in zip(samples, scores, informative_groups(scores)) if ok]
        drawn, draws = len(samples), 0
        while plan.needs_more(len(kept), draws):
            count = plan.next_draw(len(kept), drawn)
            more, _, _ = self._sample_rows(k, self.prompts.extra_indices(k, draws, count),
                                           derived_seed(self.config.seed, k, f"sample-extra-{draws}"))
            more_scores = self._judge(more)
            kept += [(s, sc) for s, sc, ok in zip(more, more_scores, informative_groups(more_scores)) if ok]
            drawn, draws = drawn + count, draws + 1
        kept = kept[:plan.target]
        return [s for s, _ in kept], [sc for _, sc in kept], {
            "dynamic_sampling/prompts_drawn": drawn, "dynamic_sampling/extra_draws": draws,
            "dynamic_sampling/prompts_kept": len(kept)}

    def phase_train(self, k: int, rd: RoundDir) -> dict[str, Any]:
        return self._train_rollouts(k, rd) if self.config.rollouts_in_round(k) else self._train_pairs(k, rd)

    def _mpo_split(self, samples: list[SampleRow], scores: list[list[float]], part: str
                   ) -> tuple[list[SampleRow], list[list[float]], dict[str, Any]]:
        """MPO: the prompts of one part, ``easy`` (score gap above the round's ``mpo.gap_quantile``)
        or ``difficult``, with the split's sizes; the gap is best − worst of a prompt's scores."""
        easy, difficult = split_by_score_gap([max(sc) - min(sc) for sc in scores], self.config.mpo.gap_quantile)
        keep = easy if part == "easy" else difficult
        return [samples[i] for i in keep], [scores[i] for i in keep], {
            "mpo/easy_prompts": len(easy), "mpo/difficult_prompts": len(difficult)}

    def _round_start_policy(self, k: int, rd: RoundDir) -> torch.nn.Module:
        """π_{k−1}, to be trained in round k, after checking that every sample of the round came
        from exactly these weights: training on samples of other (stale) weights is refused."""
        stamps = {row.weights for row in read_rows(rd.file("samples.jsonl"), SampleRow)} - {None}
        start = self.policies.fingerprint(k - 1) if stamps else None
        policy = self.policies.for_training(k - 1)
        if stamps and stamps != {start}:
            raise UserError(f"{rd.file('samples.jsonl')}: sampled from weights {sorted(stamps)[0][:12]}…, not round "
                            f"{k}'s start policy {start[:12]}… (stale samples are not trained "
                            f"on); delete the round's folder and resume to sample it again")
        return policy

    def _why_no_pairs(self, rd: RoundDir) -> str:
        """Why round ``rd`` built no preference pair, in words a user can act on."""
        samples = read_rows(rd.file("samples.jsonl"), SampleRow)
        if all(len({tuple(x.token_ids) for x in s.candidates if x.sampled}) <= 1 for s in samples):
            return ("no preference pairs: every prompt's samples are identical (sampling.temperature 0 gives n "
                    "copies of the greedy answer)")
        scores = [r.scores for r in read_rows(rd.file("scores.jsonl"), ScoreRow)]
        if all(max(sc) == min(sc) for sc in scores if sc):
            return "no preference pairs: the judge gave every candidate of each prompt the same score (all ties)"
        return "no preference pairs: no two candidates of a prompt passed the pair rules (pairs.min_margin, pairs.strategy)"

    def _carry_over(self, k: int, why: str) -> None:
        """Nothing to train on in round k: its policy is the round-start one, saved again."""
        if self.is_main:
            warnings.warn(f"round {k}: {why}; the policy is carried over unchanged")
        self.policies.save(k, self.policies.policy(k - 1))

    def _save_trained(self, k: int, policy: torch.nn.Module, ckpt_dir: Path, critic: torch.nn.Module | None = None,
                      state_dict: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
        """Save round k's trained policy (and critic) and drop its checkpoints; return round k's
        policy: ``policy`` itself, or, with ``state_dict`` (FSDP's or ZeRO-3's consolidated
        weights), the saved folder loaded whole (sampling and evaluation read whole weights). The
        caller has released and dropped its trainer (``Trainer.release``: DeepSpeed's engine is
        off the policy); the accelerator frees what it prepared (wrapper, optimizer)."""
        self.accelerator.free_memory()
        self.policies.save(k, policy, critic=critic, state_dict=state_dict)
        if self.is_main:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        # Every process may read the folder the main process has just written.
        self.accelerator.wait_for_everyone()
        return self.policies.policy(k)

    def _train_pairs(self, k: int, rd: RoundDir) -> dict[str, Any]:
        c = self.config
        objective = c.objective_for_round(k)
        # The objective's state (LCPO's reliability) as round k−1 left it: what an uninterrupted
        # run holds in memory, and the only copy after a resume.
        state = self.run_dir.round(k - 1).manifest["phases"].get("train", {}).get("objective_state") if k > 1 else None
        if state:
            objective.load_state_dict(state)
        pairs = tokenized_pairs(read_rows(rd.file("pairs.jsonl"), PairRow))
        if not pairs:
            self._carry_over(k, self._why_no_pairs(rd))
            return {"artifact": "policy", "train": {}, "tokens": 0, "objective_state": objective.state_dict()}

        def logps(model: torch.nn.Module) -> dict[str, torch.Tensor]:
            return pair_logps(model, pairs, self.tokenizer.pad_token_id, batch_size=c.train.per_device_eval_batch_size,
                              chunk_size=c.train.chunk_size, device=self.accelerator.device)

        torch.manual_seed(derived_seed(c.seed, k, "train"))
        policy = self._round_start_policy(k, rd)
        reference = self.policies.reference_for_round(k, policy)
        args = c.train.model_copy(update={"seed": derived_seed(c.seed, k, "train-order"),
                                          "reference_cache_dir": str(self.run_dir.path / "cache" / "reference_logps")})
        ckpt_dir = rd.file("train")
        # Round-start log-probs of the pairs, for the chosen-fell / rejected-rose diagnostics: the
        # precomputed round_start reference log-probs are exactly these, else one no-grad pass now.
        reuse_reference = c.reference == "round_start" and c.train.precompute_reference and not objective.needs_live_reference
        before = None if reuse_reference else logps(policy)
        features = (self.autoencoder.probe(policy, pairs, self.tokenizer.pad_token_id) if objective.reads_features
                    else None)
        trainer = PreferenceTrainer(policy, objective, args, pairs, self.tokenizer.pad_token_id,
                                    reference=reference, output_dir=ckpt_dir, accelerator=self.accelerator,
                                    progress=self.progress, features=features)
        result = trainer.train(resume_from_checkpoint=latest_checkpoint(ckpt_dir), log_file=rd.file("train_log.jsonl"))
        before = trainer.reference_logps if before is None else before
        consolidated, policy = trainer.policy_state_dict(), trainer.policy
        trainer.release()
        del trainer
        policy = self._save_trained(k, policy, ckpt_dir, state_dict=consolidated)
        tokens = sum(len(p.chosen_ids) + len(p.rejected_ids) for p in pairs) * max(1, round(c.train.num_train_epochs))
        return {"artifact": "policy", "train": round_train_metrics(result, before, logps(policy)), "tokens": tokens,
                "seed": args.seed, "reference": c.reference_mode, "policy_fingerprint": self.policies.fingerprint(k),
                "objective_state": objective.state_dict()}

    def _train_rollouts(self, k: int, rd: RoundDir) -> dict[str, Any]:
        c = self.config
        rollouts = tokenized_rollouts(read_rows(rd.file("rollouts.jsonl"), RolloutRow))
        if not rollouts:
            self._carry_over(k, "no rollouts (every prompt filtered out?)")
            return {"artifact": "policy", "train": {}, "tokens": 0}
        torch.manual_seed(derived_seed(c.seed, k, "train"))
        policy = self._round_start_policy(k, rd)
        reference = self.policies.reference_for_round(k, policy)
        critic = self.policies.critic(k - 1, policy) if "values" in self.objective.requires else None
        args = c.train.model_copy(update={"seed": derived_seed(c.seed, k, "train-order")})
        ckpt_dir = rd.file("train")
        trainer = RolloutTrainer(policy, self.objective, args, rollouts, self.tokenizer.pad_token_id,
                                 estimator=c.rollouts.estimator, reference=reference, value_head=critic,
                                 termination_token_id=self.tokenizer.eos_token_id,
                                 critic_learning_rate=c.rollouts.critic_learning_rate, output_dir=ckpt_dir,
                                 accelerator=self.accelerator, progress=self.progress)
        result = trainer.train(resume_from_checkpoint=latest_checkpoint(ckpt_dir), log_file=rd.file("train_log.jsonl"))
        metrics = {**round_train_metrics(result), **trainer.rollout_metrics}
        consolidated, policy = trainer.policy_state_dict(), trainer.policy
        critic = trainer.value_head if critic is not None else None
        trainer.release()
        del trainer
        policy = self._save_trained(k, policy, ckpt_dir, critic, state_dict=consolidated)
        tokens = sum(len(r.response_ids) for r in rollouts) * max(1, round(c.train.num_train_epochs))
        return {"artifact": "policy", "train": metrics, "tokens": tokens, "seed": args.seed,
                "reference": "mpo_dpo_policy" if c.mpo_stage(k) == "rl" else c.reference_mode,
                "policy_fingerprint": self.policies.fingerprint(k)}

    def phase_evaluate(self, k: int, rd: RoundDir) -> dict[str, Any]:
        model = self.policies.policy(k)
        sampler = self.sampling.backend(model, self.policies.saved_path(k))
        rows = self.evaluation.rows(k, sampler)
        tokens = sum(r.num_tokens for r in rows)
        e = self.config.eval
        baselines = {"best_of_n": self.evaluation.best_of_n if e.best_of_n else None,
                     "linear_alignment": self.evaluation.linear_alignment if e.linear_alignment else None}
        for name, baseline in baselines.items():
            if baseline is not None:
                baseline_rows, baseline_tokens = baseline(sampler)
                # Written before eval.jsonl, the phase's artifact: a finished phase has them all.
                self._write(rd.file(f"{name}.jsonl"), baseline_rows)
                tokens += baseline_tokens
        self._write(rd.file("eval.jsonl"), rows)
        info: dict[str, Any] = {"artifact": "eval.jsonl", "tokens": tokens}
        if self.config.eval.refusal_rate:
            info["refusal"] = {REFUSAL_RATE: refusal_rate([r.response for r in rows])}
        if self.config.eval.reliability:
            info["reliability"] = judge_reliability(rows, self.config.rollouts.filter,
                                                    derived_seed(self.config.seed, k, "reliability"))
        if self.config.eval.unseen_mass and k > 0:
            info["extrapolation"] = unseen_mass(k, rd, self.policies, self.parts.task, self.tokenizer,
                                                self.config.train.chunk_size, self.accelerator)
        return info

    # ----- the loop ------------------------------------------------------------------------------

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

        # The one fork of the round: pairs (the DPO family) or rollouts (the RL family).
        def phases(k: int) -> dict[str, Any]:
            middle = ("rollout", self.phase_rollout) if self.config.rollouts_in_round(k) else ("pair", self.phase_pair)
            return dict([("sample", self.phase_sample), ("judge", self.phase_judge), middle,
                         ("train", self.phase_train), ("evaluate", self.phase_evaluate)])
        rows: list[dict[str, Any]] = []
        for k in range(self.config.rounds + 1):
            rd = self.run_dir.round(k)
            round_phases = phases(k)
            names = ("evaluate",) if k == 0 else tuple(round_phases)
            # The main process reads the manifest (and may invalidate a phase whose artifact changed).
            todo = run_on_main(self.accelerator, lambda: [n for n in names if not rd.is_done(n)])
            for name in todo:
                torch.manual_seed(derived_seed(self.config.seed, k, name))
                with self._phase(rd, name) as info:
                    info.update(round_phases[name](k, rd))
            peak = max(gather_in_order(self.accelerator, [_peak_memory_gb()]))
            if self.is_main:
                rd.set_info(peak_memory_gb=max(rd.manifest.get("peak_memory_gb") or 0.0, peak))
                rows.append(read_round_metrics(self.run_dir, k))
                self.run_dir.write_metrics(rows)
                # The round's one summary line is shown in quiet mode too (no bars, no phase lines).
                tqdm.write(summary_line(rows[-1], rows[0], self.config.rounds))
        if self.is_main:
            build_report(self.run_dir.path)
        self.accelerator.wait_for_everyone()
        return self.run_dir.path


def start_run(recipe: str | Path | None, overrides: list[str] | None = None, output: str | Path | None = None,
              progress: bool = True) -> Path:
    """Start a new run from a recipe (None: the quickstart). Returns the run directory."""
    config = load_config(RunConfig, recipe, overrides)
    accelerator = make_accelerator()

    def choose() -> Path:
        """The run directory, its default name from the main process's clock; it must hold no run."""
        path = Path(output) if output is not None else Path("runs") / f"{config.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        if RunDir(path).config_path.exists():
            raise UserError(f"{path}: already holds a run; continue it with `selm run --resume {path}`")
        return path

    run_dir = RunDir(run_on_main(accelerator, choose))
    existed = run_dir.path.exists()
    # model/judge/data errors: before the run dir exists
    runner = OnlineRun(config, run_dir, progress=progress, accelerator=accelerator)
    run_on_main(accelerator, run_dir.check_writable)
    if runner.is_main:
        atomic_write_text(run_dir.config_path, dump_config(config))
    try:
        return runner.execute()
    except Exception:
        # A run that failed before it finished a single phase (round 0's evaluation: a task that
        # does not fit the prompts, a judge that does not answer) leaves nothing behind, so the
        # corrected command can reuse its --output; a later failure leaves a resumable run.
        if runner.is_main and not existed and not run_dir.round(0).is_done("evaluate"):
            shutil.rmtree(run_dir.path, ignore_errors=True)
        raise


def resume_run(run_dir: str | Path, progress: bool = True) -> Path:
    """Continue a run from its config.yaml; finished phases are not redone."""
    rd = RunDir(Path(run_dir))
    if not rd.config_path.is_file():
        raise UserError(f"{rd.path}: no config.yaml here; not a selm run directory")
    config = load_config(RunConfig, rd.config_path)
    accelerator = make_accelerator()
    run_on_main(accelerator, rd.check_writable)
    return OnlineRun(config, rd, progress=progress, accelerator=accelerator).execute()
