"""Config loading: YAML + overrides, one-line errors naming the key."""

import pytest

from selm.config import apply_overrides, config_keys, dump_config, format_config_keys, load_config
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


def test_an_override_that_changes_a_sections_kind_replaces_the_section():
    recipe = {"name": "run", "judge": {"kind": "gold", "task": "sort"}, "objective": {"name": "selm", "alpha": 0.001}}
    data = apply_overrides(recipe, ["judge.kind=function", "judge.callable=f.py:score", "objective.name=dpo", "name=y"])
    # The gold judge's task and SELM's alpha do not leak into the new kinds; the top level is not a section.
    assert data == {"name": "y", "judge": {"kind": "function", "callable": "f.py:score"}, "objective": {"name": "dpo"}}
    # A key given before the kind in the same command stays; the same kind again changes nothing.
    again = apply_overrides({"judge": {"kind": "gold", "task": "sort"}}, ["judge.callable=g.py:s", "judge.kind=function"])
    assert again["judge"] == {"callable": "g.py:s", "kind": "function"}
    assert apply_overrides({"judge": {"kind": "gold", "task": "sort"}}, ["judge.kind=gold"])["judge"] == {
        "kind": "gold", "task": "sort"}


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
    (["objective=spac", "reference=initial", "sampling.explore=sample"], "objective 'spac' plays against the round-start"),
    (["objective=spac"], "sampling.explore: sample"),  # auto would be a greedy y′
    (["objective=aihf"], "objective 'aihf': demonstration pairs (is_demonstration) come from demonstrations"),
    (["demonstrations={}"], "objective 'selm': demonstration pairs"),
    (["objective=aihf", "demonstrations={field: demo}"], "demonstrations.field names a column of prompts.train"),
    (["objective=aihf", "demonstrations={}", "task=null", "prompts.train=p.jsonl", "prompts.eval=e.jsonl"],
     "demonstrations: without a built-in task, set demonstrations.field"),
    (["objective=grpo", "demonstrations={}"], "sail, self_judge, demonstrations and"),
    (["objective=fl_gfn", "reference=none", "judge={kind: pairwise, model: m}"],
     "objective 'fl_gfn' scores every prefix of a response on its own: it needs a pointwise judge"),
    (["objective=fl_gfn", "reference=none", "judge={kind: llm, base_url: u, model: m}"],
     "got a pairwise 'llm' judge"),  # the llm judge is pairwise unless mode: pointwise
    (["objective=fl_gfn", "reference=none", "rollouts.overlong_cache_length=4"],
     "rollouts.overlong_cache_length shapes a whole response's reward; objective 'fl_gfn'"),
    (["objective=fl_gfn"], "objective 'fl_gfn' is reference-free; set reference: none"),
    (["sae={k: 4}"], "sae: objective 'selm' reads no sparse-autoencoder features; remove the sae section"),
    (["objective=fpo", "sae={path: folder, k: 3}"], "k sets up a trained autoencoder, but sae.path loads one"),
    (["objective=fpo", "sae={width: 3, k: 4}"], "k (4) must be <= width (3)"),
    (["objective=fpo", "sae={layer: -1}"], "sae.layer"),
    (["objective=grpo", "mpo={objective: fpo}"], "'fpo' reads sparse-autoencoder features, which the DPO stage"),
])
def test_impossible_run_configs(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(RunConfig, None, overrides)


def test_fl_gfn_reads_no_advantages_so_one_sample_per_prompt_is_enough():
    config = load_config(RunConfig, None, ["objective=fl_gfn", "reference=none", "sampling.n=1",
                                           "judge={kind: llm, base_url: u, model: m, mode: pointwise}"])
    assert config.trains_on_rollouts and not config.needs_reference
    with pytest.raises(ConfigError, match="rollouts.advantage 'grpo' compares the samples of each prompt"):
        load_config(RunConfig, None, ["objective=grpo", "reference=initial", "sampling.n=1"])


def test_resolved_config_round_trips(tmp_path):
    config = load_config(RunConfig, None, ["rounds=5", "objective=simpo", "reference=none"])
    path = write(tmp_path, dump_config(config))
    again = load_config(RunConfig, path)
    assert again == config and again.rounds == 5 and again.explore_mode == "none"


def test_the_objective_is_built_once_per_config_load(monkeypatch):
    import selm.objectives

    built = []
    real = selm.objectives.build_objective
    monkeypatch.setattr(selm.objectives, "build_objective", lambda spec: built.append(spec) or real(spec))
    config = load_config(RunConfig, None, ["objective={name: dpo, beta: 0.2}"])
    assert config.explore_mode == "none" and config.built_objective.beta == 0.2
    assert built == [{"name": "dpo", "beta": 0.2}]
    config.objective = "ipo"  # validated again on assignment: the built objective follows the spec
    assert config.built_objective.name == "ipo" and len(built) == 2
    train = load_config(TrainConfig, None, ["model_name_or_path=m", "dataset=d", "objective=ipo"])
    assert train.built_objective.name == "ipo" and len(built) == 3


def test_an_override_into_a_missing_section_starts_from_the_section_default(tmp_path):
    run = load_config(RunConfig, write(tmp_path, "rounds: 2\n"), ["train.logging_steps=7"])
    assert run.train == RunConfig().train.model_copy(update={"logging_steps": 7})
    assert RunConfig().train.learning_rate == 1e-4 != TrainConfig.model_fields["train"].default_factory().learning_rate
    train = load_config(TrainConfig, write(tmp_path, "model_name_or_path: m\ndataset: d\n"), ["train.seed=3"])
    assert train.train == type(train.train)(seed=3)
    # A section the file has keeps the file's keys and the fields' own defaults for the rest.
    run = load_config(RunConfig, write(tmp_path, "train: {learning_rate: 0.5}\n"), ["train.seed=3"])
    assert (run.train.learning_rate, run.train.seed, run.train.lr_scheduler_type) == (0.5, 3, "cosine")


def test_lora_is_a_top_level_key_in_both_recipes(tmp_path):
    for model, base in ((RunConfig, ""), (TrainConfig, "model_name_or_path: m\ndataset: d\n")):
        assert load_config(model, write(tmp_path, base + "lora: {r: 4}\n")).lora.r == 4
        with pytest.raises(ConfigError, match=r"train: lora is set at the top level of the config"):
            load_config(model, write(tmp_path, base + "train: {lora: {r: 4}}\n"))
        # The config.yaml of a run made before lora left `train` holds `lora: null`: it still loads.
        assert load_config(model, write(tmp_path, base + "train: {lora: null, seed: 1}\n")).lora is None


@pytest.mark.parametrize("overrides,message", [
    (["sampling.backend=sglang"], "sampling.backend: unknown backend 'sglang'; available: hf, vllm"),
    (["sampling.options.dtype=float32"], "sampling.options: backend 'hf': dtype: unknown key"),
    (["sampling.backend=vllm", "sampling.options.kv_cache_gib=-1"],
     "sampling.options: backend 'vllm': kv_cache_gib: Input should be greater than 0"),
    (["task=reverse"], "task: unknown task 'reverse'; available: echo, ifeval, lock, simplify, sort"),
])
def test_backend_options_and_task_names_are_checked_at_load(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(RunConfig, None, overrides)
    assert message in str(info.value)


def test_backend_options_are_kept_as_given_and_round_trip(tmp_path):
    config = load_config(RunConfig, None, ["sampling.backend=vllm", "sampling.options.kv_cache_gib=0.25"])
    assert config.sampling.options == {"kv_cache_gib": 0.25}
    assert load_config(RunConfig, write(tmp_path, dump_config(config))) == config


def test_every_config_key_has_a_description():
    from selm.reward_model import RewardModelConfig
    from selm.sampling import SAMPLERS

    models = [RunConfig, TrainConfig, RewardModelConfig, *(SAMPLERS.get(b).Options for b in SAMPLERS.available())]
    missing = [f"{model.__name__}: {key.path}" for model in models for key in config_keys(model) if not key.description]
    assert not missing
    # Sections are walked: their keys are listed (and checked) too.
    assert {"train.diagnostics_pairs", "warmup_sft.seed", "lora.target_modules", "eval.best_of_n"} <= {
        key.path for key in config_keys(RunConfig)}


def test_config_keys_show_dotted_paths_types_and_the_defaults_in_force():
    run = {key.path: key for key in config_keys(RunConfig, defaults=RunConfig())}
    assert (run["train.learning_rate"].type, run["train.learning_rate"].default) == ("float", "0.0001")
    assert (run["sampling.explore"].type, run["sampling.explore"].default) == ("auto|greedy|sample|none", "auto")
    assert (run["sail"].type, run["sail"].default) == ("section | null", "null")
    assert (run["sail.dp"].type, run["sail.dp"].default) == ("float", "0.0")
    assert run["objective"].default == "{name: selm, beta: 0.1, alpha: 0.001}"
    assert (run["train"].type, run["train"].default) == ("section", "")
    train = {key.path: key for key in config_keys(TrainConfig)}
    assert train["train.learning_rate"].default == "1.0e-06" and train["model_name_or_path"].default == "required"
    assert "train.lora" not in train and train["lora.r"].default == "16"
    line = format_config_keys([run["sampling.n"]])
    assert line == "sampling.n: int = 8  # responses per prompt"


def test_relative_paths_resolve_against_the_recipe_folder_then_the_working_directory(tmp_path, monkeypatch):
    from typing import Any

    from selm.config import StrictModel

    class Recipe(StrictModel):
        dataset: str
        prompts: dict[str, Any]
        judge: dict[str, Any]
        model_name_or_path: str

    recipes, work = tmp_path / "recipes", tmp_path / "work"
    (recipes / "data").mkdir(parents=True)
    work.mkdir()
    for file in (recipes / "data" / "prefs.jsonl", recipes / "judge.py", work / "eval.jsonl"):
        file.write_text("")
    (recipes / "run.yaml").write_text("dataset: data/prefs.jsonl\nprompts: {train: data/prefs.jsonl, eval: eval.jsonl}\n"
                                      "judge: {kind: function, callable: 'judge.py:score'}\nmodel_name_or_path: org/model\n")
    monkeypatch.chdir(work)
    config = load_config(Recipe, recipes / "run.yaml", ["prompts.other=eval.jsonl"])
    assert config.dataset == config.prompts["train"] == str(recipes / "data" / "prefs.jsonl")
    assert config.judge["callable"] == f"{recipes / 'judge.py'}:score"
    # Not beside the recipe: from the working directory (as before); a hub id is left alone.
    assert config.prompts["eval"] == str(work / "eval.jsonl") and config.model_name_or_path == "org/model"
    assert config.prompts["other"] == "eval.jsonl"  # not a path key


def test_fpo_takes_the_default_autoencoder_or_its_sae_section():
    assert load_config(RunConfig, None, ["objective=fpo"]).sae is None
    config = load_config(RunConfig, None, ["objective=fpo", "sae={layer: 1, width: 64, k: 8}"])
    assert (config.sae.layer, config.sae.width, config.sae.k, config.sae.path) == (1, 64, 8, None)
