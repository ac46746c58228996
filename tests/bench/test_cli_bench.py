"""`selm bench` end to end on the tiny shape: every system in its own process, table and JSON."""

import json

import pytest

from selm.cli import main


@pytest.mark.slow
def test_bench_tiny_writes_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--shapes", "tiny", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    labels = [r["label"] for r in report["rows"]]
    assert labels == ["selm+padding-free", "selm", "selm+lora+padding-free", "trl", "trl+lora", "naive", "sft",
                      "selm+grpo+padding-free", "trl+grpo"]
    for r in report["rows"]:
        assert r["status"] in ("ok", "skipped"), r
        assert f"| tiny | {r['label']} |" in printed
    ok = {r["label"]: r for r in report["rows"] if r["status"] == "ok"}
    assert {"selm", "selm+padding-free", "selm+lora+padding-free", "naive", "sft", "selm+grpo+padding-free"} <= set(ok)
    # Every system did the same work: the DPO rows on the pairs, the GRPO rows on the rollouts.
    assert len({r["tokens_per_step"] for r in ok.values() if "grpo" not in r["label"]}) == 1
    assert len({r["tokens_per_step"] for r in ok.values() if "grpo" in r["label"]}) == 1
    assert report["ratios"]["preference_step_vs_sft_step"] == pytest.approx(
        ok["selm+padding-free" if "selm+padding-free" in ok else "selm"]["median_step_seconds"]
        / ok["sft"]["median_step_seconds"])
    assert report["sampler"]["backends"]["hf"]["outputs_equal_to_loop"] == 1.0
    assert report["ratios"]["sampler_hf_vs_loop"] > 1.0
    assert report["machine"]["cores"] >= 1 and report["quick"] is False
    assert f"results written to {out}" in printed
