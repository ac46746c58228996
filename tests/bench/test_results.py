"""Ratio arithmetic, the tables and the JSON of `selm bench`, on hand-made rows."""

import json

import pytest

from selm.bench.results import (
    FULL_FT_FLOOR_BYTES_PER_PARAM,
    GIB,
    TARGETS,
    compute_ratios,
    format_ratios,
    format_sampler_table,
    format_table,
    memory_above_floor,
)
from selm.bench.run import BenchPlan, run_plan
from selm.bench.sampler import SamplerSpec
from selm.bench.systems import SystemSpec

PARAMS = 1_000_000
FLOOR = FULL_FT_FLOOR_BYTES_PER_PARAM * PARAMS


def row(label, seconds, tokens=700, peak=FLOOR + 10**6, shape="big", status="ok"):
    return {"shape": shape, "label": label, "status": status, "median_step_seconds": seconds,
            "tokens_per_second": tokens / seconds, "peak_rss_bytes": peak, "parameters": PARAMS,
            "trainable_parameters": PARAMS, "step_seconds": [seconds] * 3}


def sampler(loop_tps=10.0, hf_tps=50.0, vllm=None):
    backends = {"loop": {"status": "ok", "tokens_per_second": loop_tps, "median_seconds": 1.0},
                "hf": {"status": "ok", "tokens_per_second": hf_tps, "median_seconds": 0.2}}
    backends["vllm"] = vllm or {"status": "skipped", "reason": "vllm is not installed"}
    return {"shape": "big", "prompts": 4, "max_new_tokens": 8, "backends": backends}


ROWS = [
    row("selm", 10.0, peak=FLOOR + 1_000_000),
    {**row("selm+padding-free", 5.0), "notes": {"packed": True}},
    row("selm+lora", 8.0, peak=4_000_000),
    {**row("selm+lora+padding-free", 6.0, peak=3_000_000), "notes": {"packed": True}},
    row("trl", 20.0, peak=FLOOR + 4_000_000),
    row("trl+lora", 16.0, peak=5_000_000),
    row("sft", 4.0),
    {**row("selm+grpo+padding-free", 2.0, tokens=1500, peak=FLOOR + 3_000_000), "notes": {"packed": True}},
    row("trl+grpo", 5.0, tokens=1500, peak=FLOOR + 6_000_000),
    row("selm", 99.0, shape="other"),  # another shape never enters the ratios
]


def test_ratios_match_hand_computation():
    ratios, notes = compute_ratios(ROWS, "big", sampler())
    # tokens/s uses the padding-free row when there is one: (700/5) / (700/20) = 4.
    assert ratios["train_tokens_per_s_vs_trl"] == pytest.approx(4.0)
    assert ratios["lora_peak_memory_vs_trl"] == pytest.approx(3 / 5)  # the padding-free LoRA row
    # Above the 16 B/param floor: 1e6 vs 4e6 bytes.
    assert ratios["full_ft_memory_above_floor_vs_trl"] == pytest.approx(0.25)
    assert ratios["preference_step_vs_sft_step"] == pytest.approx(5.0 / 4.0)
    assert ratios["padding_free_speedup"] == pytest.approx(10.0 / 5.0)
    assert ratios["sampler_hf_vs_loop"] == pytest.approx(5.0)
    assert ratios["sampler_vllm_vs_hf"] is None
    # GRPO: tokens/s (1500/2) / (1500/5) and the whole peak RSS (not above the floor).
    assert ratios["grpo_update_tokens_per_s_vs_trl"] == pytest.approx(2.5)
    assert ratios["grpo_peak_memory_vs_trl"] == pytest.approx((FLOOR + 3_000_000) / (FLOOR + 6_000_000))
    assert notes == {"sampler_vllm_vs_hf": "vllm: vllm is not installed"}
    assert set(ratios) == set(TARGETS)


def test_missing_rows_give_null_ratios_with_reasons():
    rows = [row("selm", 10.0), row("trl", 1.0, status="failed"), row("sft", 5.0)]
    ratios, notes = compute_ratios(rows, "big", None)
    assert ratios["train_tokens_per_s_vs_trl"] is None and "trl" in notes["train_tokens_per_s_vs_trl"]
    assert ratios["padding_free_speedup"] is None and "padding-free" in notes["padding_free_speedup"]
    # Without padding-free, the padded selm row is the one compared with SFT.
    assert ratios["preference_step_vs_sft_step"] == pytest.approx(2.0)
    assert ratios["sampler_hf_vs_loop"] is None
    assert ratios["grpo_update_tokens_per_s_vs_trl"] is None and "trl+grpo" in notes["grpo_update_tokens_per_s_vs_trl"]


def test_grpo_ratios_use_the_padded_selm_row_when_packing_fell_back():
    rows = [{**row("selm+grpo+padding-free", 1.0), "notes": {"packed": False}}, row("selm+grpo", 2.0),
            row("trl+grpo", 4.0)]
    ratios, _ = compute_ratios(rows, "big", None)
    assert ratios["grpo_update_tokens_per_s_vs_trl"] == pytest.approx(2.0)


def test_padding_free_row_that_fell_back_to_padding_is_not_used():
    rows = [row("selm", 10.0), {**row("selm+padding-free", 9.0), "notes": {"packed": False}}, row("sft", 5.0)]
    ratios, notes = compute_ratios(rows, "big", None)
    assert ratios["padding_free_speedup"] is None and "really packed" in notes["padding_free_speedup"]
    assert ratios["preference_step_vs_sft_step"] == pytest.approx(2.0)


def test_memory_above_floor_is_peak_minus_16_bytes_per_parameter():
    assert memory_above_floor(row("selm", 1.0, peak=FLOOR + 123)) == 123


def test_tables_show_numbers_and_reasons():
    rows = [*ROWS[:2], {"shape": "big", "label": "trl", "status": "skipped", "reason": "trl is not installed"}]
    table = format_table(rows)
    assert table.count("\n") == 1 + len(rows)
    assert "| big | selm | 10.000 | 70.0 |" in table
    assert f"{(FLOOR + 10**6) / GIB:.2f}" in table
    assert "skipped: trl is not installed" in table
    text = format_sampler_table(sampler())
    assert "| hf | 0.20 | 50.0 |" in text and "skipped: vllm is not installed" in text
    lines = format_ratios({"padding_free_speedup": 1.75, "sampler_vllm_vs_hf": None}, {"sampler_vllm_vs_hf": "why"})
    assert "1.75   target >= 1.5" in lines and "n/a (why)" in lines


def test_run_plan_assembles_rows_skips_and_json_schema(monkeypatch):
    import selm.bench.run as run

    monkeypatch.setattr(run, "trl_available", lambda: False)
    monkeypatch.setattr(run, "padding_free_available", lambda: True)
    calls, logged = [], []

    def fake_measure(kind, spec):
        calls.append((kind, spec))
        if kind == "sampler":
            return {"status": "ok", **sampler()}
        seconds = {"selm": 10.0, "sft": 8.0}.get(spec.system, 12.0) / (2 if spec.padding_free else 1)
        return {"status": "ok", **row(spec.label, seconds, shape=spec.shape), "notes": {"packed": spec.padding_free}}

    plan = BenchPlan([SystemSpec("selm", "big"), SystemSpec("selm", "big", padding_free=True),
                      SystemSpec("trl", "big"), SystemSpec("sft", "big"),
                      SystemSpec("trl", "big", objective="grpo")], SamplerSpec("big"), "big")
    report = run_plan(plan, fake_measure, log=logged.append)
    assert [c[0] for c in calls] == ["train", "train", "train", "sampler"]  # trl was never started
    assert [r["status"] for r in report["rows"]] == ["ok", "ok", "skipped", "ok", "skipped"]
    assert "pip install" in report["rows"][2]["reason"]
    assert report["rows"][4]["label"] == "trl+grpo" and report["rows"][4]["reason"] == report["rows"][2]["reason"]
    # One line says so before anything is measured.
    assert [line for line in logged if "trl is not installed" in line] == [logged[0]]
    assert report["ratios"]["padding_free_speedup"] == pytest.approx(2.0)
    assert report["ratios"]["preference_step_vs_sft_step"] == pytest.approx(5.0 / 8.0)
    assert report["ratios"]["train_tokens_per_s_vs_trl"] is None
    # The issue's schema: ratios (all five training ones present, null allowed) and rows.
    loaded = json.loads(json.dumps(report))
    for key in ("train_tokens_per_s_vs_trl", "lora_peak_memory_vs_trl", "full_ft_memory_above_floor_vs_trl",
                "preference_step_vs_sft_step", "padding_free_speedup", "sampler_vllm_vs_hf"):
        assert key in loaded["ratios"]
    assert isinstance(loaded["rows"], list) and loaded["rows"][0]["spec"]["system"] == "selm"


def test_table_shows_the_floor_only_for_full_fine_tuning():
    lora = {**row("selm+lora", 2.0, peak=10**9), "trainable_parameters": 10}
    table = format_table([lora])
    assert table.splitlines()[-1].split("|")[6].strip() == "-"


def test_table_flags_a_padding_free_row_that_fell_back():
    table = format_table([{**row("selm+padding-free", 2.0), "notes": {"packed": False}}])
    assert "selm+padding-free (fell back to padding)" in table


def test_plans_measure_every_system_with_the_same_settings():
    from selm.bench.run import make_plan

    quick = make_plan(quick=True, threads=1)
    assert quick.ratio_shape == "small" and {s.shape for s in quick.systems} == {"small"}
    assert [s.label for s in quick.systems] == ["selm+padding-free", "selm", "selm+lora+padding-free", "trl",
                                                "trl+lora", "naive", "sft", "selm+grpo+padding-free", "trl+grpo"]
    assert {(s.objective, s.prompts, s.group_size) for s in quick.systems[-2:]} == {("grpo", 2, 4)}
    assert {(s.warmup, s.steps, s.threads, s.batch_pairs) for s in quick.systems} == {(2, 5, 1, 2)}
    assert quick.sampler.shape == "small" and quick.sampler.threads == 1
    full = make_plan(quick=False)
    assert full.ratio_shape == "gemma3-270m" and [s.shape for s in full.systems[:9]] == ["gemma3-270m"] * 9
    assert full.sampler.shape == "gemma3-270m"
    grpo = make_plan(quick=False, shapes=["gemma3-270m"], objectives=["grpo"])
    assert [s.label for s in grpo.systems] == ["selm+grpo+padding-free", "trl+grpo"] and grpo.sampler is None
    assert {(s.shape, s.warmup, s.steps) for s in grpo.systems} == {("gemma3-270m", 2, 3)}
