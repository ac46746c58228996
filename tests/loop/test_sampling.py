"""Sampling over the processes: fixed prompt blocks, each seeded by its index, so the samples do not
depend on the number of processes; completions and dataset responses as candidate rows."""

from types import SimpleNamespace

import pytest

import selm.distributed
from selm.loop.config import RunConfig
from selm.loop.sampling import BlockSampler, dataset_candidate, sampled_candidate
from selm.loop.seeds import derived_seed
from selm.modeling.tiny import build_tokenizer
from selm.sampling import Completion


class RecordingSampler:
    """A stand-in backend: completion j of a prompt holds (the call's seed, the prompt's first id, j)."""

    def __init__(self):
        self.calls = []

    def generate(self, prompt_ids, params, progress=None):
        self.calls.append((len(prompt_ids), params.seed))
        n = 1 if params.greedy else params.n
        return [[Completion([params.seed, ids[0], j], "", -1.0, 3, True) for j in range(n)] for ids in prompt_ids]


def _sampler(batch_size, rank=0, world=1):
    config = RunConfig(sampling={"batch_size": batch_size})
    accelerator = SimpleNamespace(process_index=rank, num_processes=world)
    return BlockSampler(config, build_tokenizer(vocab_size=300), accelerator, run_dir=None, progress=False)


PROMPTS = [[i + 10] for i in range(11)]


def test_blocks_hold_batch_size_rows_and_are_seeded_by_their_index():
    block_sampler = _sampler(batch_size=8)
    backend = RecordingSampler()
    out = block_sampler.generate(backend, PROMPTS, block_sampler.params(n=4, temperature=1.0, seed=5))
    # 8 rows per call = 2 prompts of 4 samples: blocks of 2 prompts, the last one short.
    assert backend.calls == [(2, derived_seed(5, b, "block")) for b in range(5)] + [(1, derived_seed(5, 5, "block"))]
    assert [o[0].token_ids[1] for o in out] == [ids[0] for ids in PROMPTS] and all(len(o) == 4 for o in out)
    greedy = RecordingSampler()
    block_sampler.generate(greedy, PROMPTS, block_sampler.params(n=4, temperature=0.0, seed=5))
    assert [size for size, _ in greedy.calls] == [8, 3]  # greedy: one row per prompt


@pytest.mark.parametrize("world", [2, 3])
def test_samples_do_not_depend_on_the_number_of_processes(monkeypatch, world):
    params = _sampler(4).params(n=2, temperature=1.0, seed=9)
    alone = _sampler(4).generate(RecordingSampler(), PROMPTS, params)
    monkeypatch.setattr(selm.distributed, "gather_in_order", lambda accelerator, local: local)  # each rank's share
    shares = [_sampler(4, rank, world).generate(RecordingSampler(), PROMPTS, params) for rank in range(world)]
    assert [c for share in shares for c in share] == alone


def test_candidate_rows():
    row = sampled_candidate(Completion([4, 5], "ab", -0.5, 2, False))
    assert row.to_json() == {"text": "ab", "token_ids": [4, 5], "logprob": -0.5, "num_tokens": 2, "finished": False}
    tokenizer = build_tokenizer(vocab_size=300)
    dataset = dataset_candidate(tokenizer, "sort: 2 1", " 1 2")
    assert dataset.source == "dataset" and dataset.logprob is None and not dataset.sampled
    assert dataset.num_tokens == len(dataset.token_ids) > 0 and dataset.text == " 1 2"
