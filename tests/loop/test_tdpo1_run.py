"""TDPO1 end to end in the loop (recipes/tdpo.yaml ships TDPO2, which the recipe test runs)."""

import json
from pathlib import Path

import pytest

from selm.loop import start_run

RECIPE = Path(__file__).parents[2] / "recipes" / "tdpo.yaml"


@pytest.mark.slow  # ~20 s of CPU: a whole round
def test_tdpo1_runs_one_small_round_with_the_sequential_kl(tmp_path):
    out = start_run(RECIPE, ["rounds=1", "prompts.per_round=8", "prompts.num_eval=2", "sampling.n=2",
                             "eval.samples_per_prompt=1", "objective={name: tdpo1, beta: 0.1}"],
                    output=tmp_path / "run", progress=False)
    log = [json.loads(line) for line in (out / "rounds" / "01" / "train_log.jsonl").read_text().splitlines()]
    assert log and all(entry["kl/chosen"] >= 0 and entry["kl/rejected"] >= 0 for entry in log)
    assert (out / "rounds" / "01" / "policy").is_dir()
