"""A round's candidates and scores → training pairs, with the per-pair values some objectives read.

The default is :func:`selm.loop.pair_rules.build_pairs` over the judge's scores. The family's other
pairings live here, each chosen by the run config:

- ``pairs.strategy: dataset`` — the prompt's own dataset pair (chosen, rejected) as labelled in
  the preference file (offline DPO inside the loop; HyPO's offline half).
- ``sail`` — SAIL's routes: per prompt, one of DP (the dataset pair), PP (the first two policy
  samples, in sampled order: the objective draws their label from the policy), PR (the first two
  policy samples, labelled by the judge; a tie drops the prompt) or plain offline DPO, drawn with
  probabilities (dp, pp, pr, 1 − dp − pp − pr) from a generator seeded by (seed, prompt index).
- ``self_judge`` — OSP: the candidates are ranked by the policy's own scores (``self_scores``),
  not the judge's, and each pair gets the soft label p = σ((s_w − s_l)/τ).
- ``demonstrations`` — AIHF: the prompt's demonstration (its last candidate, never ranked) is
  paired as chosen with the prompt's first policy sample y′ ∼ π_t as rejected, one demonstration
  pair per prompt beside the preference pairs; every pair gets ``is_demonstration`` (1 or 0).

Per-pair values for the objective, added when it ``requires`` them:

- ``chosen_advantages`` / ``rejected_advantages`` (A-LoL): A = R(x, y) − V(x) with V(x) the mean
  judge score of the prompt's policy samples. The samples come from the round-start policy, so with
  ``reference: round_start`` V is a Monte-Carlo estimate of the reference's value V_ref(x) (A-LoL
  fits a value head on the reference's own generations to the same target).
- ``online_ids`` (HyPO): the token ids of the prompt's policy samples, the k = ``sampling.n``
  online samples of the KL term.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from selm.artifacts import PairRow, SampleRow
from selm.errors import ConfigError
from selm.loop.config import RunConfig
from selm.loop.pair_rules import Pair, build_pairs
from selm.objectives.base import Objective

# SAIL route codes, as PreferenceBatch.routes reads them (selm.objectives.sail).
ROUTES = ("dp", "pp", "pr", "offline")


def _policy_indices(sample: SampleRow) -> list[int]:
    return [i for i, x in enumerate(sample.candidates) if x.sampled]


def _dataset_indices(sample: SampleRow) -> tuple[int, int]:
    """Positions of the dataset's (chosen, rejected) among a prompt's candidates."""
    found = [i for i, x in enumerate(sample.candidates) if not x.sampled]
    if len(found) != 2:
        raise ConfigError("pairs.strategy dataset / sail: every prompt needs its dataset pair "
                          "(set prompts.dataset_responses: true)")
    return found[0], found[1]


def _ranked(sample: SampleRow) -> int:
    """How many of the prompt's candidates the judge's pairing ranks: all but a demonstration, which
    is appended last."""
    return len(sample.candidates) - (sample.candidates[-1].source == "demonstration")


def _demonstration_pairs(samples: list[SampleRow], scores: list[list[float]]) -> list[Pair]:
    """AIHF's demonstration pairs: per prompt, (its demonstration, its first policy sample)."""
    return [_pair(p, s, sc, len(s.candidates) - 1, _policy_indices(s)[0]) for p, (s, sc) in enumerate(zip(samples, scores))]


def _pair(p: int, sample: SampleRow, scores: Sequence[float], chosen: int, rejected: int) -> Pair:
    texts = [x.text for x in sample.candidates]
    return Pair(p, sample.prompt_index, chosen, rejected, texts[chosen], texts[rejected],
                float(scores[chosen]), float(scores[rejected]), float(scores[chosen]) - float(scores[rejected]))


def sail_route(seed: int, prompt_index: int, mix: tuple[float, float, float]) -> int:
    """The SAIL route code (0 dp, 1 pp, 2 pr, 3 offline) of one prompt, seeded by (seed, prompt)."""
    u = random.Random(f"{seed}/sail/{prompt_index}").random()
    edges = [sum(mix[:i + 1]) for i in range(3)]
    return next((code for code, edge in enumerate(edges) if u < edge), 3)


def _sail_pairs(samples: list[SampleRow], scores: list[list[float]], mix: tuple[float, float, float],
                seed: int) -> tuple[list[Pair], list[dict[str, Any]], dict[str, Any]]:
    pairs, extras = [], []
    counts = dict.fromkeys(ROUTES, 0)
    ties = 0
    for p, (sample, sc) in enumerate(zip(samples, scores)):
        route = sail_route(seed, sample.prompt_index, mix)
        if route in (0, 3):
            chosen, rejected = _dataset_indices(sample)
        else:
            first, second = _policy_indices(sample)[:2]
            if route == 1:
                chosen, rejected = first, second
            elif sc[first] == sc[second]:
                ties += 1
                continue
            else:
                chosen, rejected = (first, second) if sc[first] > sc[second] else (second, first)
        counts[ROUTES[route]] += 1
        pairs.append(_pair(p, sample, sc, chosen, rejected))
        extras.append({"routes": float(route)})
    stats = {"pairs/count": len(pairs), "pairs/prompts": len(samples), "pairs/ties_dropped": ties,
             **{f"pairs/route_{name}": n for name, n in counts.items()}}
    return pairs, extras, stats


def round_pairs(config: RunConfig, objective: Objective, samples: list[SampleRow], scores: list[list[float]],
                seed: int, self_scores: list[list[float]] | None = None
                ) -> tuple[list[Pair], list[dict[str, Any]], dict[str, Any]]:
    """The round's pairs, one dict of per-pair values for each (merged into its pairs.jsonl row), and stats.

    Args:
        config: the run config (``pairs``, ``sail``, ``self_judge``).
        objective: decides which per-pair values are added (see the module docstring).
        samples: the rows of samples.jsonl.
        scores: ``scores[i][j]``, the judge's score of candidate j of prompt i.
        seed: the round's pairing seed.
        self_scores: with ``self_judge``, the policy's own score of every candidate.

    Returns:
        (pairs, extras, stats): ``extras[n]`` holds the values of ``pairs[n]``; ``stats`` is a flat
        ``pairs/...`` metrics dict.
    """
    c = config
    if c.sail is not None:
        pairs, extras, stats = _sail_pairs(samples, scores, (c.sail.dp, c.sail.pp, c.sail.pr), seed)
    elif c.pairs.strategy == "dataset":
        pairs = [_pair(p, s, sc, *_dataset_indices(s)) for p, (s, sc) in enumerate(zip(samples, scores))]
        extras = [{} for _ in pairs]
        stats = {"pairs/count": len(pairs), "pairs/prompts": len(samples)}
    else:
        ranking = self_scores if c.self_judge is not None else scores
        ranked = [s.candidates[:_ranked(s)] for s in samples]
        pairs, pair_stats = build_pairs(
            [s.prompt_index for s in samples], [[x.text for x in r] for r in ranked],
            [sc[:len(r)] for sc, r in zip(ranking, ranked)],
            strategy=c.pairs.strategy, min_margin=c.pairs.min_margin, length_penalty=c.pairs.length_penalty,
            lengths=[[x.num_tokens for x in r] for r in ranked], seed=seed)
        stats = pair_stats.as_metrics()
        extras = [{} for _ in pairs]
        if c.self_judge is not None:
            for pair, extra in zip(pairs, extras):
                extra["label_probs"] = 1 / (1 + math.exp(-pair.margin / c.self_judge.tau))
            # The judge's own verdict on the self-ranked pairs: how often the policy agrees with it.
            agree = [scores[q.prompt_index][q.chosen_index] > scores[q.prompt_index][q.rejected_index] for q in pairs]
            stats["pairs/self_judge_agreement"] = sum(agree) / len(agree) if agree else None
    advantages = [f for f in objective.field_table.select(objective.requires) if f.statistic == "advantage"]
    if advantages:
        for pair, extra in zip(pairs, extras):
            sc = scores[pair.prompt_index]
            policy = _policy_indices(samples[pair.prompt_index])
            value = sum(sc[i] for i in policy) / len(policy)
            index = {"chosen": pair.chosen_index, "rejected": pair.rejected_index}
            for f in advantages:
                extra[f.name] = float(sc[index[f.role]]) - value
    if "online" in objective.response_roles:
        for pair, extra in zip(pairs, extras):
            sample = samples[pair.prompt_index]
            extra["online_ids"] = [sample.candidates[i].token_ids for i in _policy_indices(sample)]
    if c.demonstrations is not None:
        demonstrations = _demonstration_pairs(samples, scores)
        extras = [{**extra, "is_demonstration": 0.0} for extra in extras] + [{"is_demonstration": 1.0}
                                                                             for _ in demonstrations]
        pairs = pairs + demonstrations
        stats["pairs/demonstrations"] = len(demonstrations)
    return pairs, extras, stats


def pair_rows(samples: list[SampleRow], pairs: list[Pair], values: list[dict[str, Any]]) -> list[PairRow]:
    """The rows of pairs.jsonl: each pair's texts and token ids from its sample, and its per-pair values."""
    rows = []
    for pair, pair_values in zip(pairs, values):
        s = samples[pair.prompt_index]
        chosen, rejected = s.candidates[pair.chosen_index], s.candidates[pair.rejected_index]
        rows.append(PairRow(prompt_index=pair.prompt_index, prompt=s.prompt, prompt_ids=s.prompt_ids,
                            chosen=chosen.text, rejected=rejected.text, chosen_ids=chosen.token_ids,
                            rejected_ids=rejected.token_ids, explore=s.explore.text if s.explore else None,
                            explore_ids=s.explore.token_ids if s.explore else None, chosen_score=pair.chosen_score,
                            rejected_score=pair.rejected_score, margin=pair.margin, values=pair_values))
    return rows
