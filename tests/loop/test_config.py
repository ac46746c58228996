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
