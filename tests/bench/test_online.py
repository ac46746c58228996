"""`selm bench --online`: the shared reward and model, the plan, the same-work check, the table, the phase log."""

import json
import math
import types

import pytest
import torch

from selm.bench import online_run
from selm.bench.call_log import CallLog
from selm.bench.online_run import compare, format_comparisons, format_online_table, make_online_plan, run_online_plan
from selm.bench.online_systems import OnlineSpec, selm_run_config
from selm.bench.online_workload import (
    online_model,
    online_prompts,
    online_tokenizer,
    score,
    text_reward,
    trl_reward,
)
from selm.bench.workloads import SHAPES
from selm.cli import main


def test_reward_is_the_mean_golden_ratio_weight_of_the_token_words():
    phi = (5 ** 0.5 - 1) / 2
    # "<bos>" and "x7" are not token words; 0.618.. * 1 and 0.236.. (= 2φ − 1) by hand.
    assert text_reward("<bos> t1 x7 t2") == pytest.approx((phi + (2 * phi - 1)) / 2, abs=1e-12)
    assert text_reward("") == 0.0 and text_reward("<eos>") == 0.0
    assert score("any prompt", "t1 t2") == trl_reward(["p"], ["t1 t2"])[0] == text_reward("t1 t2")


def test_the_tokenizer_decodes_samples_to_the_text_the_reward_reads():
    shape = SHAPES["tiny"]
    tokenizer = online_tokenizer(shape)
    ids = [5, 2, 511, 0, 1]  # pad and bos are dropped; 2 is an ordinary word here
    text = tokenizer.decode(ids, skip_special_tokens=True)
    expected = sum(math.fmod(i * ((5 ** 0.5 - 1) / 2), 1.0) for i in (5, 2, 511)) / 3
    assert text_reward(text) == pytest.approx(expected, abs=1e-12)


def test_eos_is_past_the_vocabulary_so_every_response_runs_to_max_new_tokens():
    shape = SHAPES["tiny"]
    model, tokenizer = online_model(shape).eval(), online_tokenizer(shape)
    assert tokenizer.eos_token_id == model.generation_config.eos_token_id == shape.vocab_size
    assert model.get_output_embeddings().weight.shape[0] == shape.vocab_size  # no logit for the EOS id
    prompts = torch.tensor(online_prompts(3, 4, shape.vocab_size))
    assert prompts[:, 0].eq(1).all() and prompts[:, 1:].ge(3).all()
    torch.manual_seed(0)
    out = model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=True, max_new_tokens=8,
                         pad_token_id=0)
    assert out.shape == (3, 4 + 8)


def test_quick_plan_pairs_selm_with_trl_on_the_same_workload():
    plan = make_online_plan(quick=True)
    assert [(s.shape, s.objective, s.system) for s in plan] == [
        ("small", "dpo", "selm"), ("small", "dpo", "trl"), ("small", "grpo", "selm"), ("small", "grpo", "trl")]
    for selm, trl in zip(plan[::2], plan[1::2]):
        assert {k: v for k, v in vars(selm).items() if k != "system"} == {k: v for k, v in vars(trl).items()
                                                                           if k != "system"}
        selm.check()
    dpo, grpo = plan[0], plan[2]
    assert dpo.samples == 2 and dpo.updates == dpo.prompts // dpo.batch_size == 2
    assert grpo.updates == grpo.prompts * grpo.samples // grpo.batch_size == 2
    assert [s.objective for s in make_online_plan(False, ["tiny"], objectives=["grpo"])] == ["grpo", "grpo"]


@pytest.mark.parametrize("changes, message", [
    (dict(samples=4), "samples 2"), (dict(batch_size=3), "multiple of batch_size"), (dict(system="x"), "unknown")])
def test_spec_check_refuses_work_the_sides_cannot_share(changes, message):
    spec = OnlineSpec(**{**dict(system="selm", objective="dpo", shape="tiny", prompts=4, batch_size=2), **changes})
    with pytest.raises(ValueError, match=message):
        spec.check()


def test_selm_config_is_a_valid_run_config(tmp_path):
    from selm.loop.config import RunConfig

    for objective, extra in (("dpo", {}), ("grpo", dict(samples=4, batch_size=4, epochs=2))):
        spec = OnlineSpec("selm", objective, "tiny", prompts=2, warmup_rounds=1, **extra)
        config = RunConfig.model_validate(selm_run_config(spec, tmp_path, tmp_path / "p.jsonl", tmp_path / "e.jsonl"))
        assert config.rounds == 2 and config.sampling.n == spec.samples and config.prompts.per_round == 2
        assert config.train.num_train_epochs == spec.epochs and config.built_objective.name == objective
        assert config.explore_mode == "none"  # no extra response besides the n samples


def _row(system, objective, seconds, samples=8, length=32.0, updates=2, status="ok"):
    phases = {"sample": seconds / 2, "judge": 0.0, "logps": 0.1, "update": seconds / 2 - 0.1,
              "other": 0.0 if system == "selm" else None}
    return {"status": status, "shape": "small", "system": system, "objective": objective,
            "label": f"{system}+online-{objective}", "seconds": seconds, "phases": phases, "dtype": "float32",
            "samples": samples, "sample_lengths": [length] * samples, "mean_sample_length": length, "generated_tokens": int(samples * length),
            "updates": updates, "sequences_per_update": samples / updates, "trained_tokens": int(samples * 2 * length),
            "prompts_per_second": 4 / seconds, "tokens_per_second": samples * 3 * length / seconds,
            "peak_rss_bytes": 2**30}


def test_compare_gives_the_ratio_only_for_the_same_work():
    rows = [_row("selm", "dpo", 2.0), _row("trl", "dpo", 5.0), _row("selm", "grpo", 2.0), _row("trl", "grpo", 3.0, length=31.5)]
    dpo, grpo = compare(rows)
    assert dpo["work"]["equal"] and dpo["ratio"] == pytest.approx(5.0 / 2.0)
    assert not grpo["work"]["equal"] and grpo["ratio"] is None
    assert grpo["work"]["checks"]["mean_sample_length"] == [32.0, 31.5]
    text = format_comparisons([dpo, grpo])
    assert "small dpo: same work yes" in text and "end to end 2.50x (target >= 2)" in text
    assert "small grpo: same work NO" in text and "n/a (the two sides did different work" in text


def test_compare_names_the_failed_side():
    [entry] = compare([_row("selm", "dpo", 2.0), {**_row("trl", "dpo", 1.0), "status": "failed", "error": "boom"}])
    assert entry["ratio"] is None and entry["reason"] == "trl+online-dpo: boom"


def test_table_shows_phases_work_and_trl_rest_in_update():
    rows = [_row("selm", "dpo", 2.0), _row("trl", "dpo", 5.0), {"status": "skipped", "reason": "no trl",
                                                                 "shape": "small", "label": "trl+online-grpo"}]
    lines = format_online_table(rows).splitlines()
    assert len({line.count("|") for line in lines}) == 1  # every row has every column
    assert lines[2].startswith("| small | selm+online-dpo | float32 | 2.00 | 2.000 | 384.0 | 1.00 | 0.00 | 0.10 | 0.90 "
                               "| 0.00 | 8 x 32.0 | 2 x 4 | 1.00 |")
    assert "| (in update) |" in lines[3] and "skipped: no trl" in lines[4]


def test_run_plan_measures_each_spec_and_skips_trl_without_it(monkeypatch):
    import selm.bench.run as run

    plan = make_online_plan(False, ["tiny"], objectives=["dpo"])
    seen = []

    def measure(kind, spec):
        seen.append((kind, spec.system))
        return {k: v for k, v in _row(spec.system, "dpo", 2.0).items() if k not in ("prompts_per_second",)}

    monkeypatch.setattr(run, "trl_available", lambda: False)
    report = run_online_plan(plan, measure, log=lambda _: None)
    assert seen == [("online", "selm")]
    assert [r["status"] for r in report["rows"]] == ["ok", "skipped"]
    assert report["rows"][0]["prompts_per_second"] == pytest.approx(plan[0].prompts / 2.0)
    assert report["comparisons"][0]["reason"].startswith("trl+online-dpo: trl is not installed")
    json.dumps(report)


class _Counter:
    def step(self, x):
        return x + 1


def test_call_log_times_wrapped_methods_and_restores_them():
    log, counter = CallLog(), _Counter()
    with log.wrapping(_Counter, ["step"], {"step": lambda args, result: (args, result)}):
        counter.step(1)
        with torch.no_grad():
            counter.step(2)
    assert "step" not in counter.__dict__ and _Counter.step.__name__ == "step" and counter.step(0) == 1
    assert len(log.calls) == 2  # the call after the block is not logged
    first, second = log.calls
    assert first.kept == ((1,), 2) and first.grad and not second.grad
    assert 0 <= first.seconds and first.end <= second.start
    assert log.seconds(first.start, second.end, "step", grad=False) == second.seconds
    with log.wrapping(counter, ["step"]):
        counter.step(5)
    assert "step" not in counter.__dict__ and len(log.between(second.end, float("inf"))) == 1
    module = types.ModuleType("m")
    module.double = original = lambda x: 2 * x
    with log.wrapping(module, ["double"]):
        assert module.double(3) == 6 and module.double is not original
    assert module.double is original and log.calls[-1].name == "double"


@pytest.mark.slow
def test_online_bench_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "online.json"
    assert main(["bench", "--online", "--shapes", "tiny", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert [r["label"] for r in report["rows"]] == ["selm+online-dpo", "trl+online-dpo", "selm+online-grpo",
                                                    "trl+online-grpo"]
    for row in report["rows"]:
        assert row["status"] == "ok", row
        assert f"| tiny | {row['label']} |" in printed
        assert row["updates"] == 1 and set(row["sample_lengths"]) == {4}
    for entry in report["comparisons"]:
        assert entry["work"]["equal"], entry
        assert entry["ratio"] > 0
    assert "same work yes" in printed and online_run.TARGET in printed


def test_cli_online_flag_runs_the_online_bench_with_its_options(monkeypatch):
    calls = []
    monkeypatch.setattr(online_run, "run_online_bench", lambda **kwargs: calls.append(kwargs))
    assert main(["bench", "--online", "--quick", "--shapes", "tiny", "--objectives", "grpo", "--threads", "1"]) == 0
    assert calls == [dict(quick=True, json_path=None, shapes=["tiny"], threads=1, objectives=["grpo"])]
