"""Safe by default: no pickles unless allowed, no remote code unless set, function judges only from
an explicit ``module:callable``, YAML through the safe loader, and API keys never written anywhere."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from selm.cli import main
from selm.config import load_config
from selm.errors import ConfigError, ModelLoadError
from selm.judges import build_judge
from selm.loop import OnlineRun, RunConfig
from selm.modeling.loading import load_causal_lm
from selm.rundir import RunDir
from selm.tasks.sources import resolve_model_source

SMALL = ["rounds=1", "prompts.per_round=8", "prompts.num_eval=4", "sampling.n=2", "eval.samples_per_prompt=1",
         "train.per_device_train_batch_size=4", "sampling.max_new_tokens=8"]
KEY = "sk-selm-secret-9f8e7d6c5b4a39281706"


@pytest.fixture
def pickle_model(tmp_path) -> Path:
    import torch
    from safetensors.torch import load_file

    src = Path(resolve_model_source("builtin:sort"))
    dst = tmp_path / "pickled"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(load_file(src / "model.safetensors"), dst / "pytorch_model.bin")
    return dst


def test_pickle_only_model_is_refused_unless_allowed(pickle_model):
    with pytest.raises(ModelLoadError) as info:
        load_causal_lm(str(pickle_model), dtype="float32")
    message = str(info.value)
    assert "\n" not in message and "allow_pickle: true" in message and "pytorch_model.bin" in message
    model = load_causal_lm(str(pickle_model), dtype="float32", allow_pickle=True)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_pickle_only_model_in_a_run_is_refused_before_the_run_directory(pickle_model, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--quiet", "--output", str(out), *SMALL, f"model_name_or_path={pickle_model}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "allow_pickle: true" in err
    assert not out.exists()


def test_trust_remote_code_is_false_unless_set(tmp_path, monkeypatch):
    import transformers

    seen: list[tuple[str, object, object]] = []
    for cls in (transformers.AutoModelForCausalLM, transformers.AutoTokenizer):
        real = cls.from_pretrained.__func__

        def spy(klass, *args, _real=real, _name=cls.__name__, **kwargs):
            seen.append((_name, kwargs.get("trust_remote_code", "absent"), kwargs.get("use_safetensors", "absent")))
            return _real(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    run = OnlineRun(load_config(RunConfig, None, SMALL), RunDir(tmp_path / "r"), progress=False)
    run.policies.policy(0)
    run.policies.initial_reference()
    assert {name for name, _, _ in seen} == {"AutoModelForCausalLM", "AutoTokenizer"}
    assert all(trust in (False, "absent") for _, trust, _ in seen), seen
    assert all(safe is True for name, _, safe in seen if name == "AutoModelForCausalLM"), seen
    seen.clear()
    run = OnlineRun(load_config(RunConfig, None, [*SMALL, "trust_remote_code=true"]), RunDir(tmp_path / "r2"),
                    progress=False)
    run.policies.policy(0)
    assert seen and all(trust is True for _, trust, _ in seen), seen


@pytest.mark.parametrize("reference", ["os.system", "eval", "lambda p, r: 1.0", "__import__('os').system", "builtins.eval"])
def test_function_judges_load_only_from_an_explicit_module_callable(reference):
    with pytest.raises(ConfigError, match="must look like 'package.module:function'"):
        build_judge({"kind": "function", "callable": reference})


def test_function_judge_from_module_callable_works():
    judge = build_judge({"kind": "function", "callable": "operator:sub"})
    assert judge.score([3.0], [1.0]) == [2.0]


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system ['touch {marker}']",
                                 "!!python/object:builtins.dict {{}}",
                                 "!!python/name:os.system"])
def test_yaml_python_tags_are_config_errors_and_never_run(tmp_path, tag):
    marker = tmp_path / "pwned"
    recipe = tmp_path / "evil.yaml"
    recipe.write_text(f"name: {tag.format(marker=marker)}\n")
    with pytest.raises(ConfigError, match="evil.yaml.*invalid YAML"):
        load_config(RunConfig, recipe)
    assert not marker.exists()


def test_override_values_use_the_safe_loader_too(tmp_path):
    marker = tmp_path / "pwned"
    value = f"!!python/object/apply:os.system ['touch {marker}']"
    config = load_config(RunConfig, None, [f"name={value}"])
    assert config.name == value and not marker.exists()  # kept as plain text, never run


def test_api_key_never_appears_in_the_run_directory_or_output(tmp_path, judge_server, capsys, monkeypatch):
    monkeypatch.setenv("SELM_TEST_KEY", KEY)
    server = judge_server()
    # Errors are logged / raised: the key must not be in them. The start-up check, round 0's evaluate
    # (4 prompts, one retried after the 503), then the 401 in round 1's judge phase: a resumable run.
    server.faults.extend(["ok", "503"] + ["ok"] * 4 + ["401"])
    server.default = "ok"
    judge = ("judge={kind: llm, base_url: '%s', model: m, api_key_env: SELM_TEST_KEY, mode: pointwise, "
             "backoff_s: 0.001, max_backoff_s: 0.01, timeout_s: 5}" % server.base_url)
    out = tmp_path / "run"
    assert main(["run", "--output", str(out), *SMALL, judge]) == 2  # the 401 is fatal
    first = capsys.readouterr()
    assert main(["run", "--resume", str(out)]) == 0
    second = capsys.readouterr()
    assert server.auth == {f"Bearer {KEY}"}  # the key was used...
    assert "SELM_TEST_KEY" in (out / "config.yaml").read_text()  # ...by name only
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 15 and (out / "report" / "index.html") in files
    secret = KEY.encode()
    assert not [p for p in files if secret in p.read_bytes()]
    for text in (first.out, first.err, second.out, second.err):
        assert KEY not in text
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and secret in p.read_bytes()]
