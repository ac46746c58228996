"""Config loading: YAML + overrides, one-line errors naming the key."""

import pytest

from selm.config import apply_overrides, dump_config, load_config
from selm.errors import ConfigError
from selm.loop.config import RunConfig
from selm.train.config import TrainConfig


def write(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_overrides_parse_yaml_scalars_and_nested_keys():
    data = apply_overrides({"train": {"learning_rate": 1.0}}, ["train.learning_rate=5e-7", "rounds=4", "name=x", "a.b=[1, 2]"])
    assert data == {"train": {"learning_rate": 5e-7}, "rounds": 4, "name": "x", "a": {"b": [1, 2]}}


@pytest.mark.parametrize("text,overrides,message", [
    ("model_name_or_path: m\ndataset: d\ntrain: {learning_rat: 1.0}\n", [], "train.learning_rat: unknown key"),
    ("model_name_or_path: m\ndataset: d\n", ["train.learning_rate=-1"], "train.learning_rate: Input should be greater than 0"),
    ("model_name_or_path: m\ndataset: d\n", ["train.per_device_train_batch_size=two"], "train.per_device_train_batch_size"),
    ("dataset: d\n", [], "model_name_or_path: required key is missing"),
    ("model_name_or_path: m\ndataset: d\nobjective: {name: dpo, beta: -0.1}\n", [], "beta"),
    ("model_name_or_path: m\ndataset: d\nobjective: nope\n", [], "unknown objective 'nope'"),
    ("model_name_or_path: m\ndataset: d\ntrain: {max_length: 10, max_prompt_length: 20}\n", [], "max_prompt_length (20) must be < max_length (10)"),
    ("model_name_or_path: [unclosed\n", [], "invalid YAML"),
    ("- a\n- b\n", [], "top level must be a mapping"),
])
def test_bad_train_configs_are_one_line_errors(tmp_path, text, overrides, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(TrainConfig, path, overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("overrides,message", [
    (["objective=simpo"], "reference-free; set reference: none"),
    (["objective=dpo", "reference=none"], "needs a reference"),
    (["sampling.explore=none"], "needs an exploration response"),
    (["sampling.n=1"], "sampling.n"),
    (["roundz=3"], "roundz: unknown key"),
])
def test_impossible_run_configs(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(RunConfig, None, overrides)


def test_resolved_config_round_trips(tmp_path):
    config = load_config(RunConfig, None, ["rounds=5", "objective=simpo", "reference=none"])
    path = write(tmp_path, dump_config(config))
    again = load_config(RunConfig, path)
    assert again == config and again.rounds == 5 and again.explore_mode == "none"
