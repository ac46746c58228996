"""Every shipped recipe loads and validates; the online ones run one small round."""

import json
from pathlib import Path

import pytest

from selm.config import dump_config, load_config
from selm.loop.config import RunConfig
from selm.reward_model import RewardModelConfig
from selm.train.config import TrainConfig

RECIPES = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_validates_and_its_resolved_config_loads_back(path, tmp_path):
    model = (TrainConfig if path.name.startswith("train-") else
             RewardModelConfig if path.name.startswith("reward-model-") else RunConfig)
    config = load_config(model, path)
    assert config.name == path.stem
    # What a run writes to its config.yaml (and reads on --resume) is the same config.
    resolved = tmp_path / "config.yaml"
    resolved.write_text(dump_config(config))
    assert load_config(model, resolved) == config


# Every online recipe runs one tiny round (~1.5 s each on a quiet 2-core machine), plus A-LoL's
# per-token-ratio option. gemma3-*: a real 270M model, too slow for CI (docs/results.md has its runs).
ONLINE = [p for p in RECIPES if not p.name.startswith(("train-", "reward-model-", "gemma3-"))]
TINY = ["rounds=1", "prompts.per_round=4", "prompts.num_eval=2", "sampling.n=4", "eval.samples_per_prompt=1",
        "sampling.max_new_tokens=8"]
# PF-PPO's reliability filters each held-out prompt's samples: it needs two.
# SALSA's second soup model is trained by the user first: here, π0 twice.
# MPO's RL stage follows its DPO round.
# A tree's leaves are the candidates: B^D = sampling.n = 4, with room for a last segment in 8 tokens.
NEEDS = {"pf-ppo": ["eval.samples_per_prompt=2"], "salsa": ["reference={soup: [builtin:sort, builtin:sort]}"],
         "mpo": ["rounds=2"], "tree-preferences": ["sampling.tree={depth: 2, branch: 2, segment_tokens: 4}"]}
# Direct RLHF from a base model: its judges, prompts and refusal rate, on a tiny model instead of Gemma.
RUNS = ([pytest.param(p, NEEDS.get(p.stem, []), id=p.stem) for p in ONLINE]
        + [pytest.param(RECIPES[0].parent / "alol.yaml", ["objective={name: alol, variant: seq, epsilon: 0.9}"],
                        id="alol-seq"),
           pytest.param(RECIPES[0].parent / "gemma3-270m-direct-rlhf.yaml", ["model_name_or_path=builtin:simplify"],
                        id="gemma3-270m-direct-rlhf-on-a-tiny-model")])


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory):
    """A quick reward model for the recipes that use one as their judge."""
    from selm.reward_model import train_reward_model

    rm = tmp_path_factory.mktemp("rm")
    train_reward_model(load_config(RewardModelConfig, RECIPES[0].parent / "reward-model-sort.yaml",
                                   ["num_train_epochs=0.1", f"output_dir={rm}"]), progress=False)
    return rm


@pytest.mark.parametrize(("path", "extra"), RUNS)
def test_online_recipe_runs_one_small_round(path, extra, tmp_path, request):
    from selm.loop import start_run

    overrides = TINY + extra
    judge = load_config(RunConfig, path).judge
    if judge.get("kind") == "reward_model":
        overrides.append(f"judge.path={request.getfixturevalue('reward_model')}")
    elif judge.get("kind") == "ensemble":  # an ensemble of reward models: the quick one, three times
        member = f"{{kind: reward_model, path: {request.getfixturevalue('reward_model')}}}"
        overrides.append(f"judge.judges=[{member}, {member}, {member}]")
    out = start_run(path, overrides, output=tmp_path / path.stem, progress=False)
    assert (out / "rounds" / "01" / "policy").is_dir(), path.name
    # Every training metric of the step log, the objective's own included, reaches metrics.jsonl.
    steps = [json.loads(line) for line in (out / "rounds" / "01" / "train_log.jsonl").read_text().splitlines()]
    logged = {k for entry in steps if "loss" in entry for k in entry}
    assert logged, f"{path.name}: no training step was logged"
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[1])
    missing = {k for k in logged - {"step", "epoch", "tokens_per_s", "nonfinite_steps"} if f"train/{k}" not in row}
    assert not missing, missing
