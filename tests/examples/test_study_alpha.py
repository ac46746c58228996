"""examples/study_alpha.py (``study_exploration.py alpha``): the grid, the per-run series, the paired
differences from DPO, and (slow) a tiny end-to-end run."""

import importlib
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def alpha():
    sys.path.insert(0, str(REPO / "examples"))
    try:
        yield importlib.import_module("study_alpha")
    finally:
        sys.path.remove(str(REPO / "examples"))
        for name in ("study_alpha", "study_exploration"):
            sys.modules.pop(name, None)


def test_grid_runs_dpo_once_and_gives_xpo_the_same_gradient_scale(alpha, tmp_path: Path) -> None:
    from selm.config import load_config
    from selm.loop.config import RunConfig

    rows = alpha.variants([0.0, 1e-3, 1.0], ["selm", "xpo"])
    assert [v.label() for v in rows] == ["dpo", "selm α=0.001", "selm α=1", "xpo α=0.001", "xpo α=1"]
    jobs = alpha.make_alpha_jobs(["lock"], [0.5], rows, 2, alpha.ALPHA_BUDGET, tmp_path)
    assert len(jobs) == 10 and len({j.run_dir for _, _, j in jobs}) == 10
    for beta, v, job in [j for j in jobs if j[2].seed == 0 and j[1].alpha == 1.0]:  # one SELM and one XPO job
        config = load_config(RunConfig, job.recipe, list(job.overrides))
        assert config.objective["beta"] == 0.5 and config.eval.unseen_mass and config.task == "lock"
        # XPO's bonus α·log π has no β: its α is SELM's α · β, so α·β·∇log π matches.
        want = v.alpha * 0.5 if v.objective == "xpo" else v.alpha
        assert config.objective["alpha"] == pytest.approx(want, rel=1e-12)
        assert (config.rounds, config.prompts.per_round, config.sampling.n) == (4, 64, 8)


def fake_alpha_run(run_dir: Path, gold: list[float], unseen: list[float], high_samples: list[list[str]]) -> Path:
    """A finished 2-round lock run: metrics.jsonl, eval.jsonl, and samples/scores of rounds 1–2."""
    rows = [{"round": k, "gold_reward_mean": g, "kl": 0.5 * k,
             **({"eval/unseen_mass_change": unseen[k - 1], "eval/unseen_best_mass_change": unseen[k - 1] / 10}
                if k else {})} for k, g in enumerate(gold)]
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for k in range(len(gold)):
        rd = run_dir / "rounds" / f"{k:02d}"
        rd.mkdir(parents=True)
        (rd / "eval.jsonl").write_text(json.dumps({"gold_reward": gold[k]}) + "\n")
        if k:
            texts = [" 1 1 1", " 1  1 1", " 3 2 1"] + high_samples[k - 1]
            cands = [{"text": t, "token_ids": [5], "logprob": -1.0, "num_tokens": 1, "finished": True} for t in texts]
            scores = [1.0, 1.0, 0.0] + [1.0] * len(high_samples[k - 1])
            (rd / "samples.jsonl").write_text(json.dumps({"prompt_index": 0, "prompt": "lock: 3 2 1 =>",
                                                          "prompt_ids": [1], "candidates": cands, "explore": None}) + "\n")
            (rd / "scores.jsonl").write_text(json.dumps({"prompt_index": 0, "scores": scores}) + "\n")
    return run_dir


def test_series_coverage_and_paired_differences_by_hand(alpha, tmp_path: Path) -> None:
    # Round 1 finds " 1 1 1" (twice, spacing aside: one answer); round 2 finds it again and " 1 1 1 1".
    a = alpha.alpha_series(fake_alpha_run(tmp_path / "a", [0.2, 0.3, 0.9], [-0.1, 0.2], [[], [" 1 1 1 1"]]))
    assert a["coverage"] == [0.0, 1.0, 2.0] and a["high"] == [0.0, 0.0, 1.0]
    assert a["unseen"] == [0.0, -0.1, 0.2] and a["unseen_best"] == pytest.approx([0.0, -0.01, 0.02])
    d1 = alpha.alpha_series(fake_alpha_run(tmp_path / "d1", [0.2, 0.3, 0.4], [0.1, 0.1], [[], []]))
    d2 = alpha.alpha_series(fake_alpha_run(tmp_path / "d2", [0.2, 0.3, 0.5], [0.0, 0.1], [[], []]))
    b = alpha.alpha_series(fake_alpha_run(tmp_path / "b", [0.2, 0.3, 0.8], [0.0, 0.0], [[], []]))
    stats = alpha.summarize({("lock", 0.1, "dpo"): [d1, d2], ("lock", 0.1, "selm α=1"): [a, b]})
    assert "vs_dpo" not in stats[("lock", 0.1, "dpo")]
    vs = stats[("lock", 0.1, "selm α=1")]["vs_dpo"]
    # Paired by seed: 0.9 − 0.4 = 0.5 and 0.8 − 0.5 = 0.3; t_{0.975,1} · |0.5 − 0.3| / 2.
    assert vs["gold"].mean == pytest.approx(0.4) and vs["gold"].half_width == pytest.approx(12.7062047 * 0.1, rel=1e-7)
    assert vs["coverage"].mean == pytest.approx(0.5)  # 2 − 1 and 1 − 1
    assert stats[("lock", 0.1, "dpo")]["unseen_total"].mean == pytest.approx(0.15)


@pytest.mark.slow
def test_quick_end_to_end(alpha, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    argv = ["--quick", "--seeds", "2", "--tasks", "lock", "--betas", "0.1", "--alphas", "0", "1",
            "--objectives", "selm", "--output", str(tmp_path / "runs"), "--docs", str(docs)]
    assert alpha.main(argv) == 0
    text = (docs / "results.md").read_text()
    assert "## The α ablation" in text and "| selm α=1 |" in text and "| dpo |" in text
    assert (docs / "study_alpha_quick.png").stat().st_size > 1000
    row = json.loads((tmp_path / "runs" / "lock" / "beta0.1" / "selm-a1" / "seed1" / "metrics.jsonl")
                     .read_text().splitlines()[1])
    assert -1 <= row["eval/unseen_mass_change"] <= 1 and row["eval/unseen_mass_prompts"] >= 1
    assert json.loads((tmp_path / "runs" / "alpha.json").read_text())["runs_run"] == 4
