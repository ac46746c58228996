"""What every benchmarked system trains on: the model shape and one batch of preference pairs (DPO
rows) or of judged rollouts (GRPO rows).

All systems get the same work: the same randomly initialised model (random weights time the same
as trained ones), the same pairs as the same token ids, the same batch every step. The token ids
are words of a word-level tokenizer (``"t5 t17 ..."`` encodes to ``[5, 17, ...]``), so TRL, which
tokenizes text itself, sees exactly the ids selm gets as lists.

Lengths are skewed like real preference data: prompt and response lengths are log-normal, and a
batch holds the sequences at evenly spaced quantiles of that distribution, so one batch carries
the typical spread (a few short sequences and one long one) without depending on a random draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import torch

from selm.data import TokenizedPair, TokenizedRollout

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2


@dataclass(frozen=True)
class ModelShape:
    """A Gemma-3 text model shape; ``build_model`` initialises it at random.

    Attributes:
        name: the label in tables and JSON.
        vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
        num_key_value_heads, head_dim: the transformers ``Gemma3TextConfig`` fields.
    """

    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int


# Gemma-3-270M's text config: 268M parameters, 168M of them in the tied 262k x 640 embedding.
GEMMA3_270M = ModelShape("gemma3-270m", vocab_size=262_144, hidden_size=640, intermediate_size=2048,
                         num_hidden_layers=18, num_attention_heads=4, num_key_value_heads=1, head_dim=256)
# A small model of the same family, where the output layer is not the dominant cost.
SMALL = ModelShape("small", vocab_size=8192, hidden_size=256, intermediate_size=1024,
                   num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=1, head_dim=64)
# Seconds-long smoke test of the whole pipeline (tests only).
TINY = ModelShape("tiny", vocab_size=512, hidden_size=64, intermediate_size=128,
                  num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=32)
SHAPES = {shape.name: shape for shape in (GEMMA3_270M, SMALL, TINY)}


def build_model(shape: ModelShape, seed: int = 0) -> torch.nn.Module:
    """A float32 ``Gemma3ForCausalLM`` of ``shape`` with seeded random weights (tied embeddings)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=shape.vocab_size, hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers, num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads, head_dim=shape.head_dim,
        query_pre_attn_scalar=shape.head_dim, sliding_window=512, max_position_embeddings=32_768,
        tie_word_embeddings=True, pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID,
        attn_implementation="sdpa",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Gemma3ForCausalLM(config)
    return model.float()


def num_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (a tied embedding counts once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


@dataclass(frozen=True)
class LengthProfile:
    """Log-normal token lengths: median and sigma of log-length, for prompts and responses.

    The defaults give sequences of ~190 tokens on average with a long tail, like chat preference
    data (UltraFeedback-style responses range from a few tokens to several hundred).
    """

    prompt_median: float = 60.0
    prompt_sigma: float = 0.5
    response_median: float = 100.0
    response_sigma: float = 0.8
    max_length: int = 1024


def quantile_lengths(n: int, median: float, sigma: float, lo: int, hi: int) -> list[int]:
    """n lengths at the quantiles (i + 0.5) / n of a log-normal, clipped to [lo, hi], shortest first."""
    normal = NormalDist()
    return [min(hi, max(lo, round(median * math.exp(sigma * normal.inv_cdf((i + 0.5) / n))))) for i in range(n)]


def make_pairs(batch_pairs: int, vocab_size: int, profile: LengthProfile = LengthProfile(),
               seed: int = 0) -> list[TokenizedPair]:
    """``batch_pairs`` preference pairs with skewed lengths and random token ids.

    Prompts start with BOS; responses end with EOS. Response lengths are the 2·B quantiles of the
    response distribution, shuffled over (pair, chosen/rejected) so the longest response is not
    always a chosen one.

    Returns:
        B TokenizedPairs (``index`` 1..B).
    """
    g = torch.Generator().manual_seed(seed)
    prompt_lengths = quantile_lengths(batch_pairs, profile.prompt_median, profile.prompt_sigma, 2, profile.max_length // 2)
    response_lengths = quantile_lengths(2 * batch_pairs, profile.response_median, profile.response_sigma, 2,
                                         profile.max_length // 2)
    response_lengths = [response_lengths[i] for i in torch.randperm(2 * batch_pairs, generator=g).tolist()]

    def ids(n: int) -> list[int]:
        return torch.randint(3, vocab_size, (n,), generator=g).tolist()

    pairs = []
    for i, prompt_len in enumerate(prompt_lengths):
        chosen_len, rejected_len = response_lengths[2 * i], response_lengths[2 * i + 1]
        pairs.append(TokenizedPair(index=i + 1, prompt_ids=[BOS_ID, *ids(prompt_len - 1)],
                                   chosen_ids=[*ids(chosen_len - 1), EOS_ID],
                                   rejected_ids=[*ids(rejected_len - 1), EOS_ID]))
    return pairs


def sequence_lengths(pairs: list[TokenizedPair]) -> list[int]:
    """Prompt+response length of every sequence of a preference step (chosen rows, then rejected)."""
    return ([len(p.prompt_ids) + len(p.chosen_ids) for p in pairs]
            + [len(p.prompt_ids) + len(p.rejected_ids) for p in pairs])


def make_rollouts(prompts: int, group_size: int, vocab_size: int, profile: LengthProfile = LengthProfile(),
                  seed: int = 0) -> list[TokenizedRollout]:
    """``prompts`` groups of ``group_size`` judged responses with skewed lengths and fixed rewards.

    Prompt lengths are the ``prompts`` quantiles of the prompt profile; the response lengths are the
    ``prompts * group_size`` quantiles of the response profile, shuffled over the groups (like
    ``make_pairs``). Rewards are seeded uniform draws in [0, 1), distinct within every group (so
    every group has a spread and a non-zero advantage). Prompts start with BOS, responses end with
    EOS; no sampling log-probs are attached (the systems add them from the model).

    Returns:
        prompts * group_size TokenizedRollouts, group by group (``group`` 0..prompts-1).
    """
    g = torch.Generator().manual_seed(seed)
    n = prompts * group_size
    prompt_lengths = quantile_lengths(prompts, profile.prompt_median, profile.prompt_sigma, 2, profile.max_length // 2)
    response_lengths = quantile_lengths(n, profile.response_median, profile.response_sigma, 2, profile.max_length // 2)
    response_lengths = [response_lengths[i] for i in torch.randperm(n, generator=g).tolist()]
    rewards = torch.rand(n, generator=g, dtype=torch.float64).tolist()

    def ids(k: int) -> list[int]:
        return torch.randint(3, vocab_size, (k,), generator=g).tolist()

    rollouts = []
    for p, prompt_len in enumerate(prompt_lengths):
        prompt_ids = [BOS_ID, *ids(prompt_len - 1)]
        for j in range(group_size):
            i = p * group_size + j
            rollouts.append(TokenizedRollout(index=i, prompt_ids=prompt_ids,
                                             response_ids=[*ids(response_lengths[i] - 1), EOS_ID],
                                             reward=rewards[i], group=p))
    return rollouts


def word_tokenizer(vocab_size: int, eos_id: int = EOS_ID):
    """A word-level tokenizer where ``"t<i>"`` is token i: text round-trips to exact ids.

    Ids 0 and 1 are ``<pad>`` and ``<bos>``; ``<eos>`` is ``eos_id`` (2 by default; an id at or past
    ``vocab_size`` adds it after the words, and id 2 is then the word ``"t2"``). No special token is
    added on encode.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": PAD_ID, "<bos>": BOS_ID, "<eos>": eos_id}
    vocab.update({f"t{i}": i for i in range(2, vocab_size) if i != eos_id})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>")


def ids_to_text(ids: list[int]) -> str:
    """The text that :func:`word_tokenizer` encodes back to ``ids``."""
    names = {PAD_ID: "<pad>", BOS_ID: "<bos>", EOS_ID: "<eos>"}
    return " ".join(names.get(i, f"t{i}") for i in ids)
