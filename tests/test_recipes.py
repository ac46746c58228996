"""Every shipped recipe loads and validates (the online ones run in tests/loop)."""

from pathlib import Path

import pytest

from selm.config import load_config
from selm.loop.config import RunConfig
from selm.train.config import TrainConfig

RECIPES = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_validates(path):
    model = TrainConfig if path.name.startswith("train-") else RunConfig
    config = load_config(model, path)
    assert config.name == path.stem


def test_online_recipes_run_one_small_round(tmp_path):
    from selm.loop import start_run

    for path in RECIPES:
        if path.name.startswith("train-"):
            continue
        out = start_run(path, ["rounds=1", "prompts.per_round=8", "prompts.num_eval=4"], output=tmp_path / path.stem,
                        progress=False)
        assert (out / "rounds" / "01" / "policy").is_dir(), path.name
