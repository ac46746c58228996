"""Tree-structured sampling: B^D leaves with exact shared prefixes, their log-probs, and DPO's h on a
shared-prefix pair equal to h on the suffixes alone."""

import itertools

import pytest
import torch

from selm.config import load_config
from selm.engine.score import score_sequences
from selm.errors import ConfigError
from selm.loop.config import RunConfig
from selm.modeling.tiny import build_tiny_model
from selm.sampling import HFSampler, SamplingParams
from selm.sampling.tree import TreeShape, generate_tree

SHAPE = TreeShape(depth=3, branch=2, segment_tokens=3)
MAX_NEW_TOKENS = 10  # segments of 3, 3 and 4 tokens


def common_levels(i: int, j: int, shape: TreeShape) -> int:
    """How many levels leaves i and j share: their leading equal base-B digits."""
    digits = [[(leaf // shape.branch ** (shape.depth - 1 - d)) % shape.branch for d in range(shape.depth)]
              for leaf in (i, j)]
    return next((d for d in range(shape.depth) if digits[0][d] != digits[1][d]), shape.depth)


@pytest.fixture
def trees(model, tokenizer):  # type: ignore[no-untyped-def]
    """(prompts, leaves) of two prompts, sampled at temperature 1."""
    prompts = [tokenizer(t).input_ids for t in ("The quick brown fox", "sort: 3 1 2 ->")]
    sampler = HFSampler(model, tokenizer, progress=False)
    return prompts, generate_tree(sampler, tokenizer, prompts, SamplingParams(max_new_tokens=MAX_NEW_TOKENS, seed=3),
                                  SHAPE)


def test_leaves_share_exact_prefixes_down_to_their_first_different_branch(trees, model, tokenizer) -> None:
    prompts, leaves = trees
    assert [len(group) for group in leaves] == [SHAPE.leaves] * 2 == [8, 8]
    for prompt, group in zip(prompts, leaves):
        assert all(leaf.finished or leaf.num_tokens == MAX_NEW_TOKENS for leaf in group)
        for i, j in itertools.combinations(range(SHAPE.leaves), 2):
            shared = common_levels(i, j, SHAPE) * SHAPE.segment_tokens
            assert group[i].token_ids[:shared] == group[j].token_ids[:shared], (i, j)
        # Siblings of the first level differ in their first segment (300 tokens: a tie is unlikely).
        assert group[0].token_ids[:SHAPE.segment_tokens] != group[-1].token_ids[:SHAPE.segment_tokens]
        assert len({tuple(leaf.token_ids) for leaf in group}) == SHAPE.leaves
        # A leaf's log-prob is log π(leaf | prompt), the sum of its segments', equal to the engine's
        # one pass (float32 reduction order: ~1e-6 per logit of size ~1, over 10 tokens).
        engine = score_sequences(model, [(prompt, leaf.token_ids) for leaf in group], tokenizer.pad_token_id)
        assert [leaf.logprob for leaf in group] == pytest.approx(engine.tolist(), abs=1e-4)
        assert group[0].text == tokenizer.decode(group[0].token_ids, skip_special_tokens=True)


def test_dpo_logit_of_a_shared_prefix_pair_equals_the_suffixes_alone(trees, model, tokenizer) -> None:
    prompts, leaves = trees
    reference = build_tiny_model(len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 num_key_value_heads=1, seed=1).eval()
    prompt, chosen, rejected = prompts[0], leaves[0][0], leaves[0][1]  # siblings: share D − 1 segments
    cut = (SHAPE.depth - 1) * SHAPE.segment_tokens
    assert chosen.token_ids[:cut] == rejected.token_ids[:cut]
    whole = [(prompt, chosen.token_ids), (prompt, rejected.token_ids)]
    suffixes = [(prompt + chosen.token_ids[:cut], chosen.token_ids[cut:]),
                (prompt + rejected.token_ids[:cut], rejected.token_ids[cut:])]

    def h(sequences: list[tuple[list[int], list[int]]]) -> tuple[float, float]:
        """DPO's h = (π(c) − π_ref(c)) − (π(r) − π_ref(r)), and Σ|log-probs| (the scale of its rounding)."""
        policy, ref = (score_sequences(m, sequences, tokenizer.pad_token_id).double() for m in (model, reference))
        return float((policy[0] - ref[0]) - (policy[1] - ref[1])), float(policy.abs().sum() + ref.abs().sum())

    h_whole, scale = h(whole)
    h_suffix, _ = h(suffixes)
    # The prefix terms cancel exactly in h; numerically, the four float32 sums each carry ~eps·Σ|log p|
    # of rounding (and the two layouts reduce in different orders): 16·eps32 of their total is ample.
    assert h_whole == pytest.approx(h_suffix, abs=16 * torch.finfo(torch.float32).eps * scale)
    # The prefix itself does not cancel term by term: its log-probs are not negligible.
    prefix = score_sequences(model, [(prompt, chosen.token_ids[:cut])], tokenizer.pad_token_id)
    assert abs(float(prefix[0])) > 1.0


def test_a_finished_node_is_copied_not_extended(eos_heavy_model, tokenizer) -> None:
    # EOS is always the argmax: greedy decoding ends every first segment at once.
    sampler = HFSampler(eos_heavy_model, tokenizer, progress=False)
    [leaves] = generate_tree(sampler, tokenizer, [tokenizer("hi").input_ids],
                             SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW_TOKENS), SHAPE)
    assert [leaf.token_ids for leaf in leaves] == [[tokenizer.eos_token_id]] * SHAPE.leaves
    assert all(leaf.finished for leaf in leaves)


@pytest.mark.parametrize(("overrides", "message"), [
    (["sampling.tree={depth: 2, branch: 2}", "sampling.n=8"],
     "sampling.tree: branch^depth = 4 leaves per prompt: set sampling.n to it (got 8)"),
    (["sampling.tree={depth: 3, branch: 2, segment_tokens: 8}", "sampling.n=8", "sampling.max_new_tokens=16"],
     "sampling.tree: (depth − 1) × segment_tokens = 16 leaves no token of sampling.max_new_tokens (16)"),
    (["sampling.tree={depth: 2, branch: 1}"], "sampling.tree.branch: Input should be greater than or equal to 2"),
    (["sampling.tree={depth: 1, branch: 2}", "sampling.n=2", "sampling.linear_alignment={principle: p}"],
     "sampling.tree: cannot be combined with sampling.linear_alignment"),
])
def test_bad_configurations_are_one_line_naming_the_key(overrides, message) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(RunConfig, None, overrides)
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="sampling.tree.segment_tokens: must be >= 1, got 0"):
        TreeShape(segment_tokens=0)
