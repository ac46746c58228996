"""Tree-structured sampling (Qiu et al., "Reward Generalization in RLHF: A Topological Perspective",
https://arxiv.org/abs/2402.10184): per prompt, a prefix tree of depth D and branching B whose B^D
root-to-leaf paths are the responses, so sibling responses share exact token prefixes.

Level d (0 ≤ d < D) extends every node of the level above by B sampled segments of
``segment_tokens`` tokens (the last level: of whatever ``max_new_tokens`` leaves), each drawn from
the policy given the prompt and the node's tokens, exactly as one continuation: the segments of a
path are one sample of the policy, and log π(leaf | prompt) is the sum of its segments' log-probs.
A node that already ended (EOS or a stop token) is not extended: its B^(D−d) leaves are copies of
it (ties, which pairing drops). Leaves are numbered by their path, leaf i = Σ_d b_d·B^(D−1−d)
(b_d the branch taken at level d): leaves i and j share the segments of every level above the first
base-B digit where i and j differ. Any backend that continues token ids (hf, vllm) can grow the tree.

The paper compares leaves of the same tree and trains an ordinary Bradley–Terry reward model on
them. It gives no code; its segment lengths and its leaf-pairing rule are not stated in what we
could read, so the segment length is a parameter and the leaves are paired by the run's
``pairs.strategy`` like any candidates of one prompt (``all_pairs`` compares every two leaves).
For a pair that shares a prefix, DPO's h has no contribution from it: the prefix's log-ratio terms
are the same in chosen and rejected and cancel (``tests/sampling/test_tree.py`` checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from selm.errors import ConfigError
from selm.sampling.base import Completion, Sampler, SamplingParams, SamplingProgress


@dataclass(frozen=True)
class TreeShape:
    """The prefix tree grown per prompt.

    Attributes:
        depth: D ≥ 1 levels of segments.
        branch: B ≥ 2 children per node.
        segment_tokens: L ≥ 1 tokens per segment of every level but the last, which runs to
            ``max_new_tokens`` in all.
    """

    depth: int = 2
    branch: int = 2
    segment_tokens: int = 8

    def __post_init__(self) -> None:
        for name, low in (("depth", 1), ("branch", 2), ("segment_tokens", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"sampling.tree.{name}: must be >= {low}, got {getattr(self, name)!r}")

    @property
    def leaves(self) -> int:
        """B^D, the responses per prompt."""
        return self.branch ** self.depth

    def check(self, max_new_tokens: int) -> None:
        """Raise a ConfigError when the D − 1 inner segments leave the last level no token."""
        if (self.depth - 1) * self.segment_tokens >= max_new_tokens:
            inner = (self.depth - 1) * self.segment_tokens
            raise ConfigError(f"sampling.tree: (depth − 1) × segment_tokens = {inner} leaves no token of "
                              f"sampling.max_new_tokens ({max_new_tokens}) for the last level")


@dataclass
class _Node:
    """A path from the root: its tokens, their summed and per-token log-probs, whether it has ended."""

    token_ids: list[int]
    logprob: float
    token_logprobs: list[float] | None
    finished: bool

    def extended(self, segment: Completion) -> "_Node":
        logprobs = (self.token_logprobs + segment.token_logprobs
                    if self.token_logprobs is not None and segment.token_logprobs is not None else None)
        return _Node(self.token_ids + segment.token_ids, self.logprob + segment.logprob, logprobs, segment.finished)


def generate_tree(sampler: Sampler, tokenizer: Any, prompt_token_ids: list[list[int]], params: SamplingParams,
                  shape: TreeShape, progress: SamplingProgress | None = None) -> list[list[Completion]]:
    """Grow one prefix tree per prompt and return its leaves.

    Args:
        sampler: any backend; level d calls ``sampler.generate`` once on the prompts extended by
            the open nodes of level d − 1, with ``n = B`` and a seed derived from ``params.seed``
            and d.
        tokenizer: decodes each leaf's tokens whole (a tokenizer may not decode piece by piece).
        prompt_token_ids: P prompts.
        params: temperature, top-p, top-k, stop tokens and ``max_new_tokens`` (for the whole
            response); ``params.n`` is ignored: each prompt gets B^D leaves.
        shape: D, B and L.
        progress: a caller's bar; it advances by P × B^D completions at the end.

    Returns:
        P lists of B^D completions, leaf i at position i (module docstring); ``logprob`` is the
        summed log π(leaf | prompt) at temperature 1 (nats), ``finished`` says whether it ended.
    """
    shape.check(params.max_new_tokens)
    frontier = [[_Node([], 0.0, [], False)] for _ in prompt_token_ids]  # frontier[p]: level-d nodes, in leaf order
    for level in range(shape.depth):
        budget = (shape.segment_tokens if level < shape.depth - 1
                  else params.max_new_tokens - (shape.depth - 1) * shape.segment_tokens)
        open_nodes = [(p, k) for p, nodes in enumerate(frontier) for k, node in enumerate(nodes) if not node.finished]
        level_params = replace(params, n=shape.branch, max_new_tokens=budget, seed=_level_seed(params.seed, level))
        segments = sampler.generate([prompt_token_ids[p] + frontier[p][k].token_ids for p, k in open_nodes],
                                    level_params) if open_nodes else []
        children = dict(zip(open_nodes, segments))
        frontier = [[child for k, node in enumerate(nodes)
                     for child in ([node.extended(s) for s in children[(p, k)]] if (p, k) in children
                                   else [node] * shape.branch)]
                    for p, nodes in enumerate(frontier)]
    leaves = [node for nodes in frontier for node in nodes]
    if progress is not None:
        progress.advance(len(leaves), sum(len(node.token_ids) for node in leaves))
    text = iter(tokenizer.batch_decode([node.token_ids for node in leaves], skip_special_tokens=True))
    return [[Completion(token_ids=node.token_ids, text=next(text), logprob=node.logprob, num_tokens=len(node.token_ids),
                        finished=node.finished, token_logprobs=node.token_logprobs)
             for node in nodes] for nodes in frontier]


def _level_seed(seed: int, level: int) -> int:
    """A seed for one level of the tree, from the caller's seed (distinct levels draw independently)."""
    return (seed * 1_000_003 + level * 7_919 + 1) % 2**62
