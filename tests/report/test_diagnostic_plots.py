"""Report plots of the diagnostics: proxy vs gold reward, best-of-N, gradient entanglement, log-prob shifts."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from selm.report import build_report

NEW_PLOTS = {"proxy_vs_gold.png", "entanglement.png", "logp_shift.png"}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _run(tmp_path: Path, judge: dict, diagnostics: bool) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"name": "rm", "task": "sort", "rounds": 2, "judge": judge}))
    rows = []
    for k in range(3):
        row = {"round": k, "reward_mean": 0.5 + k, "gold_reward_mean": 0.6 - 0.1 * k, "kl": 0.3 * k,
               "length_mean": 9.0, "eval/best_of_n": 4, "eval/best_of_n_reward": 1.0 + k,
               "eval/best_of_n_gold_reward": 0.7}
        if k and diagnostics:
            row.update({"diag/chosen_logp_fell_frac": 0.4, "diag/rejected_logp_rose_frac": 0.1,
                        "diag/both_logp_fell_frac": 0.3, "diag/grad_cosine": 0.8})
            _write_jsonl(run / "rounds" / f"{k:02d}" / "train_log.jsonl",
                         [{"step": s, "loss": 0.6} for s in (1, 2)]
                         + [{"step": 2, "diag/grad_cosine": 0.8, "diag/grad_ratio": 1.2}])
        rows.append(row)
    _write_jsonl(run / "metrics.jsonl", rows)
    return run


def test_diagnostic_plots_are_written_when_the_metrics_exist(tmp_path):
    folder = build_report(_run(tmp_path, {"kind": "reward_model", "path": "rm"}, diagnostics=True))
    for name in NEW_PLOTS | {"reward.png"}:
        assert (folder / name).read_bytes().startswith(b"\x89PNG"), name
    markdown = (folder / "report.md").read_text()
    assert "Proxy vs gold reward" in markdown and "Gradient entanglement" in markdown
    assert "best-of-N gold reward" in markdown  # summary column


def test_no_diagnostic_plots_without_their_metrics_or_with_the_gold_judge(tmp_path):
    folder = build_report(_run(tmp_path, {"kind": "gold", "task": "sort"}, diagnostics=False))
    assert not any((folder / name).exists() for name in NEW_PLOTS)
    assert (folder / "reward.png").is_file()
