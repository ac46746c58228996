from pathlib import Path

import pytest
import yaml

from selm.loop.config import QUICKSTART_TRAIN, RunConfig
from selm.loop.run import start_run


def test_one_train_override_without_recipe_keeps_the_quickstart_training_block(tmp_path, monkeypatch):
    seen = {}

    def stop(self):
        seen["config"] = self.config
        raise SystemExit(0)

    monkeypatch.setattr("selm.loop.run.OnlineRun.execute", stop)
    try:
        start_run(None, ["train.logging_steps=7"], output=tmp_path / "run", progress=False)
    except SystemExit:
        pass
    train = seen["config"].train
    assert train.logging_steps == 7
    for key, value in QUICKSTART_TRAIN.items():
        if key != "logging_steps":
            assert getattr(train, key) == value, key
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["train"]["learning_rate"] == QUICKSTART_TRAIN["learning_rate"]


def test_default_config_is_the_quickstart_training_block():
    train = RunConfig().train
    assert {k: getattr(train, k) for k in QUICKSTART_TRAIN} == QUICKSTART_TRAIN


def test_the_prompt_budget_follows_max_length_and_must_leave_room():
    from selm.config import load_config
    from selm.errors import ConfigError
    from selm.loop import RunConfig

    assert load_config(RunConfig, None, ["train.max_length=40", "sampling.max_new_tokens=16"]).prompt_budget == 24
    assert load_config(RunConfig, None, ["train.max_prompt_length=20"]).prompt_budget == 20
    with pytest.raises(ConfigError, match=r"train.max_length \(64\) must hold train.max_prompt_length \(60\) "
                                          r"\+ sampling.max_new_tokens \(16\)"):
        load_config(RunConfig, None, ["train.max_prompt_length=60"])
    with pytest.raises(ConfigError, match=r"train.max_length \(16\) leaves no prompt tokens"):
        load_config(RunConfig, None, ["train.max_length=16", "sampling.max_new_tokens=16"])


def test_own_prompts_mean_no_task_and_a_task_that_cannot_read_them_fails_at_once(tmp_path):
    """Forgetting task: null is impossible with both prompt sets given; naming a task whose gold
    reward cannot read the prompts fails while the run is set up, before any work or folder."""
    import time

    from selm.config import load_config
    from selm.errors import ConfigError
    from selm.loop import RunConfig

    recipe = Path(__file__).parents[2] / "recipes" / "own-data.yaml"
    assert load_config(RunConfig, recipe).task is None
    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"task: 'sort' cannot score prompts.eval \(not a sort prompt.*task: null"):
        start_run(recipe, ["task=sort"], output=tmp_path / "run", progress=False)
    assert time.monotonic() - start < 30 and not (tmp_path / "run").exists()
