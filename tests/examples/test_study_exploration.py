"""examples/study_exploration.py: the grid, the aggregation over seeds, and a tiny end-to-end run."""

import importlib
import json
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def study():
    # Imported by its own name from examples/ (put on sys.path): the study's spawned worker
    # processes receive the parent's sys.path and import it the same way.
    sys.path.insert(0, str(REPO / "examples"))
    try:
        yield importlib.import_module("study_exploration")
    finally:
        sys.path.remove(str(REPO / "examples"))
        sys.modules.pop("study_exploration", None)


def fake_run(run_dir: Path, gold: list[float], kl: list[float], eval_gold: list[list[float]],
             count_key: str = "pairs/count") -> Path:
    """A run directory with the files run_series reads: metrics.jsonl and rounds/NN/eval.jsonl
    (``count_key``: the training-example count of a pairwise run, or ``rollouts/count`` of an RL run)."""
    rows = [{"round": k, "gold_reward_mean": g, "kl": x, **({count_key: 10.0 + k, "train/steps": 2} if k else {})}
            for k, (g, x) in enumerate(zip(gold, kl))]
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for k, values in enumerate(eval_gold):
        (run_dir / "rounds" / f"{k:02d}").mkdir(parents=True)
        (run_dir / "rounds" / f"{k:02d}" / "eval.jsonl").write_text(
            "".join(json.dumps({"gold_reward": v}) + "\n" for v in values))
    return run_dir


def test_aggregate_by_hand(study, tmp_path: Path) -> None:
    a = study.run_series(fake_run(tmp_path / "a", [0.4, 0.6], [0.0, 1.0], [[0.4, 0.9], [0.8, 1.0, 0.2, 0.5]]))
    b = study.run_series(fake_run(tmp_path / "b", [0.4, 0.8], [0.0, 2.0], [[0.1, 0.2], [0.79, 0.81]]))
    assert a["high"] == [0.5, 0.5] and b["high"] == [0.0, 0.5]  # share with gold >= 0.8
    assert a["examples"] == [11.0] and a["steps"] == [2]
    c = study.aggregate({("echo", "selm"): [a, b]})[("echo", "selm")]
    # Two seeds: t_{0.975, 1} = 12.7062; half-width = t · s / sqrt(2) with s = |x1 − x2| / sqrt(2), i.e. t·|x1 − x2|/2.
    t = 12.7062047
    assert c["gold"][1].mean == pytest.approx(0.7) and c["gold"][1].half_width == pytest.approx(t * 0.2 / 2, rel=1e-7)
    assert c["kl"][1].mean == pytest.approx(1.5) and c["kl"][1].half_width == pytest.approx(t * 1.0 / 2, rel=1e-7)
    assert c["gold"][0].half_width == 0.0  # equal round-0 values
    assert c["high"][0].mean == pytest.approx(0.25) and c["steps_total"][0].mean == 2.0
    assert c["examples"][0].mean == 11.0


def test_an_rl_run_counts_its_rollouts_as_training_examples(study, tmp_path: Path) -> None:
    run = study.run_series(fake_run(tmp_path / "rl", [0.4, 0.5], [0.0, 0.1], [[0.1], [0.9]], count_key="rollouts/count"))
    assert run["examples"] == [11.0] and run["high"] == [0.0, 1.0]


def test_grid_gives_every_algorithm_the_same_budget(study, tmp_path: Path) -> None:
    assert {"grpo", "rloo", "ppo", "fl-gfn"} == study.RL_ALGORITHMS < set(study.ALGORITHMS)
    # The published study's eight rows are the default; every known row can be run by name.
    assert len(study.STUDY_ALGORITHMS) == 8 and set(study.STUDY_ALGORITHMS) < set(study.ALGORITHMS)
    assert study.parse_args([]).algorithms == list(study.STUDY_ALGORITHMS)
    n = len(study.ALGORITHMS)
    jobs = study.make_jobs(["echo", "sort"], list(study.ALGORITHMS), 5, study.FULL, tmp_path)
    assert len(jobs) == 2 * n * 5 and len({j.run_dir for j in jobs}) == 2 * n * 5
    samples = set(study.FULL.overrides(rl=True))
    pairwise = set(study.FULL.overrides())
    assert samples < pairwise and {o.split("=")[0] for o in pairwise - samples} == {
        "train.per_device_train_batch_size", "train.num_train_epochs"}
    for job in jobs:
        # Every row gets the sample budget; only the pairwise rows get the batch size and epochs.
        assert samples <= set(job.overrides)
        assert (pairwise <= set(job.overrides)) == (job.algorithm not in study.RL_ALGORITHMS)
        assert {f"task={job.task}", f"model_name_or_path=builtin:{job.task}", f"judge.task={job.task}",
                f"seed={job.seed}"} <= set(job.overrides)
        # The budget keys are set once, so the recipe's own values cannot leak through.
        keys = [o.split("=")[0] for o in job.overrides]
        assert len(keys) == len(set(keys))
    # Every recipe accepts the overrides (validated as `selm run` would).
    from selm.config import load_config
    from selm.loop.config import RunConfig

    for job in jobs[:2 * n]:  # seed 0: every algorithm on both tasks
        config = load_config(RunConfig, job.recipe, list(job.overrides))
        assert (config.rounds, config.prompts.per_round, config.sampling.n) == (3, 128, 8)
        assert (config.prompts.num_eval, config.eval.samples_per_prompt) == (64, 4)
        recipe = load_config(RunConfig, job.recipe, [])
        if job.algorithm in study.RL_ALGORITHMS:  # the recipe's own training hyperparameters are kept
            assert config.train == recipe.train and config.objective == recipe.objective
            assert config.rollouts == recipe.rollouts
            assert job.train_settings() == (recipe.train.per_device_train_batch_size,
                                            recipe.train.num_train_epochs, recipe.train.learning_rate)
        else:
            assert config.train.per_device_train_batch_size == 8 and config.train.num_train_epochs == 1


def test_a_run_made_with_another_config_is_not_reused(study, tmp_path: Path) -> None:
    from selm.config import dump_config, load_config
    from selm.errors import UserError
    from selm.loop.config import RunConfig

    job = study.make_jobs(["sort"], ["selm"], 1, study.QUICK, tmp_path)[0]
    Path(job.run_dir).mkdir(parents=True)
    config = Path(job.run_dir) / "config.yaml"
    config.write_text(dump_config(load_config(RunConfig, job.recipe, list(job.overrides))))
    job.check_reusable()  # the same config: reused
    config.write_text(dump_config(load_config(RunConfig, job.recipe, [*job.overrides, "prompts.per_round=16"])))
    with pytest.raises(UserError, match="seed0: holds a run with another config"):
        job.check_reusable()


@pytest.mark.slow
def test_end_to_end_writes_tables_plot_and_only_its_section(study, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    other = "# Results\n\n<!-- gemma:begin -->\nGemma numbers\n<!-- gemma:end -->\n"
    (docs / "results.md").write_text(other)
    algorithms = ["selm", "online-simpo", "grpo", "rloo", "ppo"]
    argv = ["--quick", "--seeds", "2", "--tasks", "sort", "--algorithms", *algorithms,
            "--output", str(tmp_path / "runs"), "--docs", str(docs), "--workers", "1"]
    assert study.main(argv) == 0
    text = (docs / "results.md").read_text()
    assert text.startswith(other.rstrip("\n"))  # the other section is untouched
    assert text.count("<!-- study:begin -->") == 1 and "## Exploration study" in text
    assert all(f"| {a} | " in text for a in algorithms) and "± " in text
    assert "5 online algorithms (2 pairwise and 3 RL)" in text and "PPO's recipe samples 4 per prompt" in text
    assert (docs / "study_exploration_quick.png").stat().st_size > 1000
    summary = json.loads((tmp_path / "runs" / "study.json").read_text())
    assert summary["runs_run"] == 10 and summary["budget"]["rounds"] == 1
    assert 0 <= summary["starting_policy"]["sort"]["high_rate"] <= 1
    assert summary["rl_train"]["grpo"] == [32, 2.0, 1.0e-4]  # the recipe's batch, update epochs and lr
    quick = summary["budget"]["prompts_per_round"] * summary["budget"]["samples_per_prompt"]
    for algorithm in algorithms:
        rows = (tmp_path / "runs" / "sort" / algorithm / "seed1" / "metrics.jsonl").read_text().splitlines()
        assert len(rows) == 2 and not math.isnan(json.loads(rows[1])["kl"])
        last = json.loads(rows[1])
        assert last["train/steps"] >= 1
        if algorithm in ("grpo", "rloo", "ppo"):  # every sample of the budget is a training example
            assert last["rollouts/count"] == quick
    # A second invocation reuses the finished runs and rewrites only its section.
    assert study.main(argv) == 0
    assert json.loads((tmp_path / "runs" / "study.json").read_text())["runs_reused"] == 10
    assert (docs / "results.md").read_text().count("## Exploration study") == 1
