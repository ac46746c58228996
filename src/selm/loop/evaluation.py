"""A round's held-out evaluation: samples of the policy scored by the eval judge and the gold reward, with
their log-probs under π0 (for the KL), and the inference-time baselines (best-of-N, linear alignment).
Sharded over the processes."""

from __future__ import annotations

from typing import Any

from selm.artifacts import BestOfNRow, EvalRow, PairRow, RolloutRow, SampleRow, read_rows
from selm.data import tokenize_response
from selm.distributed import map_sharded
from selm.eval.extrapolation import extrapolation_metrics
from selm.eval.reliability import reward_reliability
from selm.judges import Judge
from selm.loop.config import RunConfig
from selm.loop.policies import RoundPolicies
from selm.loop.prompts import prompt_token_ids
from selm.loop.rollout_rules import filter_rollouts
from selm.loop.sampling import BlockSampler
from selm.loop.scoring import sequence_logps
from selm.loop.seeds import derived_seed
from selm.rundir import RoundDir, RunDir
from selm.sampling import Completion, Sampler
from selm.tasks import Task


class HeldOutEvaluation:
    """Evaluates a round's policy on the run's fixed held-out prompts.

    Args:
        config: the run config (``seed``, ``eval``, ``train.chunk_size``).
        prompts: the held-out prompts.
        judge: the eval judge (pointwise or pairwise).
        task: the built-in task, for the gold reward; or None.
        sampling: samples the policy.
        policies: gives π0 as a reference.
        run_dir: earlier rounds' eval rows (a pairwise judge compares with them).
        accelerator: the run's accelerator (the work is sharded over its processes).
    """

    def __init__(self, config: RunConfig, prompts: list[Any], judge: Judge, task: Task | None, sampling: BlockSampler,
                 policies: RoundPolicies, run_dir: RunDir, accelerator: Any):
        self.config = config
        self.prompts = prompts
        self.prompt_ids, _ = prompt_token_ids(sampling.tokenizer, prompts, config.prompt_budget)
        self.judge = judge
        self.task = task
        self.sampling = sampling
        self.policies = policies
        self.run_dir = run_dir
        self.accelerator = accelerator

    def _gold(self, prompts: list[Any], texts: list[str]) -> list[float | None]:
        return self.task.gold_reward(prompts, texts) if self.task is not None else [None] * len(texts)

    def rows(self, k: int, sampler: Sampler) -> list[EvalRow]:
        """``samples_per_prompt`` samples per held-out prompt from ``sampler`` (round k's policy), each with
        its judge reward (None for a pairwise judge), gold reward, log π_k and log π0, and, for a
        pairwise judge in rounds k ≥ 1, its win probability against round 0's and round k − 1's sample."""
        c = self.config
        params = self.sampling.params(c.eval.samples_per_prompt, c.eval.temperature, derived_seed(c.seed, 0, "eval"))
        outputs = self.sampling.generate(sampler, self.prompt_ids, params)
        flat = [(i, j, o) for i, outs in enumerate(outputs) for j, o in enumerate(outs)]
        judge = self.judge
        # A pairwise judge has no pointwise reward: it compares with earlier rounds' responses.
        baselines = ([read_rows(self.run_dir.round(r).file("eval.jsonl"), EvalRow) for r in (0, k - 1)]
                     if judge.is_pairwise and k > 0 else [])

        def score(shard: list[int]) -> list[EvalRow]:
            """The eval rows of the flat samples numbered ``shard``."""
            prompts = [self.prompts[flat[n][0]] for n in shard]
            texts = [flat[n][2].text for n in shard]
            rewards = [None] * len(texts) if judge.is_pairwise else judge.score(prompts, texts)
            gold = self._gold(prompts, texts)
            wins = [judge.compare(prompts, texts, [rows[n].response for n in shard]) for rows in baselines]
            win_initial, win_previous = wins or ([None] * len(texts), [None] * len(texts))
            initial = ([flat[n][2].logprob for n in shard] if k == 0 else sequence_logps(
                self.policies.initial_reference(),
                [(self.prompt_ids[flat[n][0]], list(flat[n][2].token_ids)) for n in shard],
                self.sampling.tokenizer.pad_token_id, c.train.chunk_size))
            return [EvalRow(prompt_index=i, sample_index=j, prompt=self.prompts[i], response=o.text,
                            num_tokens=o.num_tokens, finished=o.finished, reward=r, gold_reward=g, logprob=o.logprob,
                            initial_logprob=lp, token_ids=list(o.token_ids), win_vs_initial=wi, win_vs_previous=wp)
                    for (i, j, o), r, g, lp, wi, wp in zip([flat[n] for n in shard], rewards, gold, initial,
                                                           win_initial, win_previous)]

        return map_sharded(self.accelerator, list(range(len(flat))), score)

    def best_of_n(self, sampler: Sampler) -> tuple[list[BestOfNRow], int]:
        """Best-of-N baseline: N = ``eval.best_of_n`` samples per held-out prompt, the eval judge's
        favourite kept.

        Returns:
            (one row per prompt, the tokens sampled in all).
        """
        c = self.config
        params = self.sampling.params(c.eval.best_of_n, c.eval.temperature, derived_seed(c.seed, 0, "best-of-n"))
        return self._favourites(self.sampling.generate(sampler, self.prompt_ids, params))

    def linear_alignment(self, sampler: Sampler) -> tuple[list[BestOfNRow], int]:
        """Linear-alignment baseline (``eval.linear_alignment``): one response per held-out prompt,
        decoded from the contrast of the prompt with and without the principle at ``eval.temperature``.

        Returns:
            (one row per prompt, n = 1, the tokens generated in all).
        """
        c, la = self.config, self.config.eval.linear_alignment
        params = self.sampling.params(1, c.eval.temperature, derived_seed(c.seed, 0, "linear-alignment"))
        aligned = (self.sampling.principled_ids(self.prompts, la.principle), la.alignment)
        return self._favourites(self.sampling.generate(sampler, self.prompt_ids, params, aligned))

    def _favourites(self, outputs: list[list[Completion]]) -> tuple[list[BestOfNRow], int]:
        """Per held-out prompt, the eval judge's favourite of its N completions (the only one for
        N = 1) with its judge and gold rewards; and the tokens of all the completions."""
        judge = self.judge

        def pick(shard: list[int]) -> list[BestOfNRow]:
            prompts = [self.prompts[i] for i in shard]
            candidates = [[o.text for o in outputs[i]] for i in shard]
            scores = judge.rank_scores_batch(prompts, candidates)
            best = [max(range(len(s)), key=s.__getitem__) for s in scores]
            texts = [cands[b] for cands, b in zip(candidates, best)]
            return [BestOfNRow(prompt_index=i, response=t, num_tokens=outputs[i][b].num_tokens, n=len(outputs[i]),
                               reward=None if judge.is_pairwise else s[b], gold_reward=g)
                    for i, t, b, s, g in zip(shard, texts, best, scores, self._gold(prompts, texts))]

        rows = map_sharded(self.accelerator, list(range(len(self.prompt_ids))), pick)
        return rows, sum(o.num_tokens for outs in outputs for o in outs)


def judge_reliability(rows: list[EvalRow], rollout_filter: str, seed: int) -> dict[str, float | None]:
    """PF-PPO's R² of the eval judge's rewards against the gold rewards of the held-out samples: on
    all of them, and on those ``rollout_filter`` keeps of each prompt's samples (the responses an RL
    round with that filter would train on). ``reliability/…`` keys (``selm.eval.reliability``).

    Args:
        rows: the round's eval rows, with pointwise judge rewards and gold rewards.
        rollout_filter: the run's ``rollouts.filter``.
        seed: seeds ``best_random``'s draws.
    """
    scored = [r for r in rows if r.reward is not None and r.gold_reward is not None]
    metrics = reward_reliability([r.reward for r in scored], [r.gold_reward for r in scored]) if len(scored) >= 3 else {}
    if rollout_filter != "none":
        prompts: dict[int, list[EvalRow]] = {}
        for r in scored:
            prompts.setdefault(r.prompt_index, []).append(r)
        groups = list(prompts.values())
        kept = [g[i] for g, keep in zip(groups, filter_rollouts([[r.reward for r in g] for g in groups],
                                                                rollout_filter, seed)) for i in keep]
        if len(kept) >= 3:
            metrics.update(reward_reliability([r.reward for r in kept], [r.gold_reward for r in kept],
                                              filter_name=rollout_filter))
    return metrics


def training_responses(rd: RoundDir) -> dict[tuple[int, ...], set[tuple[int, ...]]]:
    """Round ``rd``'s training prompts (token ids) -> the distinct responses (token ids) its training
    examples hold: the chosen and rejected responses of its pairs, or its rollouts. The exploration
    response y0 is not counted: every pairwise objective sees the same preference data."""
    seen: dict[tuple[int, ...], set[tuple[int, ...]]] = {}
    if rd.file("pairs.jsonl").is_file():
        for p in read_rows(rd.file("pairs.jsonl"), PairRow):
            seen.setdefault(tuple(p.prompt_ids), set()).update((tuple(p.chosen_ids), tuple(p.rejected_ids)))
    else:
        for r in read_rows(rd.file("rollouts.jsonl"), RolloutRow):
            seen.setdefault(tuple(r.prompt_ids), set()).add(tuple(r.token_ids))
    return seen


def unseen_mass(k: int, rd: RoundDir, policies: RoundPolicies, task: Task | None, tokenizer: Any, chunk_size: int,
                accelerator: Any) -> dict[str, float]:
    """``eval/unseen_mass_change`` of round k ≥ 1 (``selm.eval.extrapolation``): on the round's training
    prompts, the mass outside their training responses under π_k minus under π_{k−1}; with a task, also
    the change of the mass on its ideal responses (``reference_responses``) that are not among them.
    Exact: log-probs of the seen (and ideal) responses only. Leaves π_k loaded."""
    seen = training_responses(rd)
    texts = {tuple(s.prompt_ids): s.prompt for s in read_rows(rd.file("samples.jsonl"), SampleRow)}
    prompts = list(seen)
    ideal: list[list[tuple[int, ...]]] = [[] for _ in prompts]
    if task is not None:
        known = [i for i, ids in enumerate(prompts) if ids in texts]
        for i, text in zip(known, task.reference_responses([texts[prompts[i]] for i in known])):
            ids = tuple(tokenize_response(tokenizer, texts[prompts[i]], text))
            ideal[i] = [ids] if ids not in seen[prompts[i]] else []
    groups = [(list(prompts[i]), sorted(seen[prompts[i]]), ideal[i]) for i in range(len(prompts))]

    def logps(model: Any, which: int) -> list[list[float]]:
        def score(shard: list[int]) -> list[list[float]]:
            flat = [(groups[g][0], list(y)) for g in shard for y in groups[g][which]]
            values = iter(sequence_logps(model, flat, tokenizer.pad_token_id, chunk_size) if flat else [])
            return [[next(values) for _ in groups[g][which]] for g in shard]
        return map_sharded(accelerator, list(range(len(groups))), score)

    before = policies.policy(k - 1)
    seen_before, best_before = logps(before, 1), logps(before, 2)
    after = policies.policy(k)
    return extrapolation_metrics(seen_before, logps(after, 1), *(
        (best_before, logps(after, 2)) if task is not None else ()))
