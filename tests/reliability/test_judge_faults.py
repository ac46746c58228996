"""The LLM judge in a real `selm run` against a local faulty OpenAI-compatible server (conftest.py).

Timeouts, 429 / 5xx and malformed bodies are retried with (tiny) backoff within the budget, a
refused answer is asked again once with a stricter instruction, and every score is the server's
real verdict; when the budget runs out or the server dies mid-phase, the judge phase fails with
one JudgeError line (exit 2), the run directory stays resumable, and `selm run --resume` finishes
once the server is back, without asking again what was answered. A judge that cannot be reached
fails the run at start, before any work. A score is never made up.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selm.cli import main

SMALL = ["rounds=1", "prompts.per_round=8", "prompts.num_eval=4", "sampling.n=3", "eval.samples_per_prompt=1",
         "train.per_device_train_batch_size=4", "sampling.max_new_tokens=8"]
KEY = "sk-selm-test-0123456789abcdef"


def judge_override(url: str, mode: str, retries: int = 4) -> str:
    return ("judge={kind: llm, base_url: '%s', model: m, api_key_env: SELM_TEST_KEY, mode: %s, max_retries: %d, "
            "backoff_s: 0.001, max_backoff_s: 0.01, timeout_s: 0.3, concurrency: 2}" % (url, mode, retries))


def run(out: Path, url: str, mode: str, retries: int = 4) -> int:
    return main(["run", "--quiet", "--output", str(out), *SMALL, judge_override(url, mode, retries)])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _expected(candidates: list[str], mode: str, rating) -> list[float]:
    if mode == "pointwise":
        return [float(rating(c)) for c in candidates]
    wins = [0.0] * len(candidates)  # round robin, both orders: ½·(P(i≻j) + 1 − P(j≻i)) per unordered pair
    for i in range(len(candidates)):
        for j in range(i + 1, len(candidates)):
            forward = 1.0 if rating(candidates[i]) >= rating(candidates[j]) else 0.0
            backward = 1.0 if rating(candidates[j]) >= rating(candidates[i]) else 0.0
            p = 0.5 * (forward + 1.0 - backward)
            wins[i] += p
            wins[j] += 1.0 - p
    return wins


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("selm: error: ") and "Traceback" not in err, err
    return lines[0]


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("SELM_TEST_KEY", KEY)


FAULTS = ["429", "ok", "500", "timeout", "ok", "malformed", "503", "refuse", "ok", "nocontent", "ok", "ok"]


@pytest.mark.parametrize("mode", ["pointwise", "pairwise"])
def test_transient_faults_are_retried_and_scores_are_real(tmp_path, judge_server, mode):
    server = judge_server()
    server.faults.extend(FAULTS * 3)  # spread over round 0's evaluate and round 1's judge phase
    out = tmp_path / "run"
    assert run(out, server.base_url, mode) == 0
    assert sum(n for action, n in server.served.items() if action != "ok") == len(FAULTS) * 3 - 15
    assert server.auth == {f"Bearer {KEY}"}
    samples = read_jsonl(out / "rounds" / "01" / "samples.jsonl")
    scores = read_jsonl(out / "rounds" / "01" / "scores.jsonl")
    for sample, row in zip(samples, scores, strict=True):
        assert row["scores"] == _expected([c["text"] for c in sample["candidates"]], mode, server.rating)
    if mode == "pointwise":
        for row in read_jsonl(out / "rounds" / "01" / "eval.jsonl"):
            assert row["reward"] == float(server.rating(row["response"]))
    assert not _temporaries(out)


@pytest.mark.parametrize("fault,message", [
    ("503", "gave up after 3 attempts; last error: HTTP 503"),
    ("429", "gave up after 3 attempts; last error: HTTP 429"),
    ("timeout", "gave up after 3 attempts"),
    ("refuse", "no rating (1-10) in the answer 'I cannot judge this.'"),
    ("malformed", "malformed response body"),
    ("401", "HTTP 401"),
])
def test_exhausted_budget_fails_the_judge_phase_then_resume_finishes(tmp_path, judge_server, capsys, fault, message):
    server = judge_server()
    out = tmp_path / "run"
    server.faults.extend(["ok"] * 5)  # the start-up check and round 0's evaluate (4 held-out prompts) are fine
    server.default = fault
    assert run(out, server.base_url, "pointwise", retries=2) == 2
    line = _one_line(capsys)
    assert "judge llm 'm'" in line and message in line, line
    if fault == "401":
        assert "not retried" in line
    assert KEY not in line
    bound = 5 + 2 * 3 * (1 if fault == "401" else 3)  # at most `concurrency` items in flight, 3 attempts each
    assert server.requests <= bound, server.requests
    manifest = json.loads((out / "rounds" / "01" / "manifest.json").read_text())
    assert "sample" in manifest["phases"] and "judge" not in manifest["phases"]
    assert not (out / "rounds" / "01" / "scores.jsonl").exists() and not _temporaries(out)
    server.default = "ok"
    assert main(["run", "--quiet", "--resume", str(out)]) == 0
    assert len(read_jsonl(out / "metrics.jsonl")) == 2


@pytest.mark.parametrize("mode", ["pointwise", "pairwise"])
def test_server_dying_mid_phase_then_resume_after_it_is_back(tmp_path, judge_server, capsys, mode):
    server = judge_server()
    port = server.port
    out = tmp_path / "run"
    # the start-up check, and round 0's evaluate unless pairwise (a pairwise judge does not score it)
    before_judge = 1 if mode == "pairwise" else 5
    server.faults.extend(["ok"] * (before_judge + 5) + ["die"])
    assert run(out, server.base_url, mode, retries=2) == 2
    line = _one_line(capsys)
    assert "judge llm 'm'" in line and "gave up after 3 attempts" in line, line
    assert "connection" in line.lower() or "remote" in line.lower() or "refused" in line.lower(), line
    manifest = json.loads((out / "rounds" / "01" / "manifest.json").read_text())
    assert "judge" not in manifest["phases"] and not _temporaries(out)
    answered = {text for action, text in server.asked[before_judge:] if action == "ok"}
    kept = read_jsonl(out / "rounds" / "01" / "judge_answers.0.jsonl")
    # every answer the judge phase got before the server died: 5, or 6 if one slipped in during its shutdown
    assert len(kept) == len(answered) >= 5
    back = judge_server(port)  # the server is back, on the same address
    assert main(["run", "--quiet", "--resume", str(out)]) == 0
    assert back.requests > 0
    assert not answered & {text for _, text in back.asked}  # the resumed phase continued: none asked again
    samples = read_jsonl(out / "rounds" / "01" / "samples.jsonl")
    scores = read_jsonl(out / "rounds" / "01" / "scores.jsonl")
    assert [r["prompt_index"] for r in scores] == list(range(8))
    for sample, row in zip(samples, scores, strict=True):
        assert row["scores"] == _expected([c["text"] for c in sample["candidates"]], mode, back.rating)


def test_an_unreachable_judge_fails_the_run_at_start(tmp_path, judge_server, capsys):
    server = judge_server()
    server.stop()  # nothing listens on its port any more
    out = tmp_path / "run"
    assert run(out, server.base_url, "pointwise") == 2
    line = _one_line(capsys)
    assert line.startswith("selm: error: judge llm 'm': start-up check failed: connection failed: "), line
    assert line.endswith("(check_at_start: false skips this check)"), line
    assert not out.exists()  # before the run directory, round 0's evaluation or any sampling
