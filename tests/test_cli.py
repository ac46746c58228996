"""The CLI: user errors are one line on stderr with exit code 2; --debug shows the traceback."""

import subprocess
import sys

import pytest

from selm.cli import main


def test_unknown_key_exits_2_with_one_line(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: m\ndataset: d\nlearning_rate: 1\n")
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"selm: error: {recipe}: learning_rate: unknown key"


def test_missing_data_file_names_the_file(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model_name_or_path: builtin:sort\ndataset: {tmp_path}/missing.jsonl\noutput_dir: {tmp_path}/out\n")
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "missing.jsonl" in err and len(err.strip().splitlines()) == 1


def test_debug_shows_traceback(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: m\ndataset: d\nbogus: 1\n")
    out = subprocess.run([sys.executable, "-m", "selm", "--debug", "train", str(recipe)], capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_resume_of_a_non_run_directory(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "no config.yaml here" in capsys.readouterr().err


def test_objectives_lists_the_registry(capsys):
    assert main(["objectives"]) == 0
    out = capsys.readouterr().out
    assert "selm" in out and "SELM(beta=0.01, alpha=0.001)" in out and "simpo" in out
    assert "advantage estimators" in out and "GAEAdvantage(kl_coef=0.05, gamma=1.0, lam=0.95, whiten=True)" in out


def test_help_config_prints_every_key_with_type_default_and_meaning(capsys):
    from selm.config import config_keys
    from selm.loop.config import RunConfig
    from selm.reward_model import RewardModelConfig
    from selm.train.config import TrainConfig

    for argv, model in ((["run"], RunConfig), (["train"], TrainConfig), (["reward-model", "train"], RewardModelConfig)):
        with pytest.raises(SystemExit) as done:  # like --help: no recipe needed, nothing else runs
            main([*argv, "--help-config"])
        assert done.value.code == 0
        lines = capsys.readouterr().out.splitlines()
        for key in config_keys(model):
            line = next(x for x in lines if x.startswith(f"{key.path}: {key.type}"))
            assert line.endswith(f"# {key.description}") and key.description, line
    assert any(x.startswith("learning_rate: float = 1.0e-05 ") for x in lines)  # the reward model's own default


def test_help_config_of_run_shows_the_quickstart_defaults_and_backend_options(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help-config"])
    out = capsys.readouterr().out
    assert "\ntrain.learning_rate: float = 0.0001 " in out  # the quickstart's, not TrainingArguments' 1e-06
    assert "\nsampling.options.kv_cache_gib: float | null = null " in out and "(backend vllm) KV cache" in out


PLUGIN = '''
from selm.objectives import Objective, ObjectiveOutput, register_objective


@register_objective("plugin_zero")
class Zero(Objective):
    def compute(self, batch):
        return ObjectiveOutput(0.0 * batch.policy_chosen_logps)
'''


def test_plugin_modules_are_imported_before_the_command(tmp_path, monkeypatch, capsys):
    from selm.objectives.base import OBJECTIVES

    (tmp_path / "my_selm_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_selm_plugin", raising=False)
    with OBJECTIVES.temporary_registrations():
        assert main(["--plugin", "my_selm_plugin", "objectives"]) == 0
        assert "plugin_zero" in capsys.readouterr().out
    sys.modules.pop("my_selm_plugin", None)
    with pytest.raises(SystemExit) as failed:
        main(["--plugin", "no_such_selm_plugin", "objectives"])
    assert failed.value.code == 2
    err = capsys.readouterr().err
    assert "--plugin no_such_selm_plugin: cannot import it (No module named 'no_such_selm_plugin')" in err


def test_version_and_help_texts(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_code:
        main(["--version"])
    assert exit_code.value.code == 0 and capsys.readouterr().out.strip() == f"selm {version('selm')}"
    with pytest.raises(SystemExit):
        main(["train"])
    err = capsys.readouterr().err
    assert "required: recipe" in err and "overrides" not in err.split("required:")[1]
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "selm run --help-config" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "both" not in capsys.readouterr().out


def test_vision_packages_built_for_another_torch_are_named(monkeypatch):
    """vLLM's CPU build pulls CUDA torchvision / torchaudio / torchcodec, which make transformers fail
    with "Could not import module 'LlamaConfig'": the one-line error names them and the fix."""
    import importlib.metadata

    from selm.cli import mismatched_vision_packages

    versions = {"torchvision": "0.28.0", "torchaudio": "2.11.1"}

    def fake_version(name):
        if name not in versions:
            raise importlib.metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(importlib.metadata, "version", fake_version)
    monkeypatch.setattr("torch.__version__", "2.13.0+cpu")
    cause = mismatched_vision_packages()
    assert "torchvision 0.28.0, torchaudio 2.11.1 were not built for this torch (2.13.0+cpu)" in cause
    assert cause.endswith("pip uninstall -y torchvision torchaudio")
    versions.clear()
    assert mismatched_vision_packages() == ""
