"""Bad input, table-driven: every case runs the real CLI and must end in exit code 2 with ONE line
on stderr (``selm: error: ...``) naming the file / row / key and what is wrong, no traceback, and
nothing half-written: no output folder for `selm train`, and no run directory for a bad `selm run`
config or a judge that fails before the run's first phase is done (one failing later leaves a
resumable run: ``test_judge_failing_mid_run_leaves_a_resumable_run``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from selm.cli import main
from selm.loop.run import TIMING_PREFIXES

RUN_SMALL = ["rounds=1", "prompts.per_round=8", "prompts.num_eval=4", "sampling.n=2",
             "eval.samples_per_prompt=1", "train.per_device_train_batch_size=4", "sampling.max_new_tokens=8"]

GOOD_ROW = {"prompt": "sort: 3 1 2 =>", "chosen": " 1 2 3", "rejected": " 3 2 1"}

JUDGES_PY = '''\
import math
import os


def text(prompt, response):
    return "very good"


def nan(prompt, response):
    return float("nan")


def short(prompts, responses):
    return [0.0] * (len(responses) - 1)


def flaky(prompt, response):
    if os.environ.get("SELM_TEST_JUDGE_BROKEN"):
        return math.nan
    return -abs(len(response) - 6) + 0.01 * sum(map(ord, response)) % 1


not_callable = 3
'''


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


class Env:
    """Files a case can point at, made fresh in each test's tmp folder."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.out = tmp / "out"
        self.run = tmp / "run"
        (tmp / "judges.py").write_text(JUDGES_PY)
        self.judges = tmp / "judges.py"
        self.recipe = tmp / "train.yaml"
        self.recipe.write_text(
            "model_name_or_path: builtin:sort\n"
            f"dataset: {self.data('good', [GOOD_ROW] * 4)}\n"
            f"output_dir: {self.out}\n"
            "objective: {name: dpo, beta: 0.1}\n"
            "train: {max_steps: 1, max_length: 64, dtype: float32, per_device_train_batch_size: 2}\n")

    def data(self, name: str, rows: list) -> Path:
        return _write_jsonl(self.tmp / f"{name}.jsonl", rows)

    def yaml(self, name: str, text: str) -> Path:
        path = self.tmp / f"{name}.yaml"
        path.write_text(text)
        return path

    def train(self, *overrides: str) -> list[str]:
        return ["train", str(self.recipe), "--quiet", *overrides]

    def train_data(self, name: str, rows: list, *overrides: str) -> list[str]:
        return self.train(f"dataset={self.data(name, rows)}", *overrides)

    def run_cmd(self, *overrides: str, recipe: Path | None = None) -> list[str]:
        head = ["run", str(recipe)] if recipe else ["run"]
        return [*head, "--quiet", "--output", str(self.run), *RUN_SMALL, *overrides]

    def model_folder(self, name: str, tokenizer: bool, weights: str = "safetensors") -> Path:
        from selm.tasks.sources import resolve_model_source

        src = Path(resolve_model_source("builtin:sort"))
        dst = self.tmp / name
        dst.mkdir()
        shutil.copy(src / "config.json", dst / "config.json")
        if weights == "safetensors":
            shutil.copy(src / "model.safetensors", dst / "model.safetensors")
        else:
            import torch
            from safetensors.torch import load_file

            torch.save(load_file(src / "model.safetensors"), dst / "pytorch_model.bin")
        if tokenizer:
            for f in src.iterdir():
                if "token" in f.name or f.name.endswith((".model", ".txt")) or f.name == "vocab.json":
                    shutil.copy(f, dst / f.name)
        return dst


CHAT = [{"role": "user", "content": "sort: 3 1 2 =>"}]

# (id, argv(env), substrings the one error line must contain, what must not be left behind)
CASES = [
    # ----- datasets (selm train) -------------------------------------------------------------
    ("data-missing-field", lambda e: e.train_data("d", [GOOD_ROW, {"prompt": "p", "chosen": "c"}]),
     ["d.jsonl", "row 2", "rejected", "missing"], "out"),
    # Extra columns are allowed (datasets carry ids, sources, scores); a misspelled required one is not.
    ("data-extra-misspelled-field", lambda e: e.train_data("d", [GOOD_ROW, {"prompt": "p", "chosen": "c", "rejcted": "r"}]),
     ["d.jsonl", "row 2", "rejected", "rejcted"], "out"),
    ("data-wrong-type", lambda e: e.train_data("d", [GOOD_ROW, {**GOOD_ROW, "chosen": 7}]),
     ["d.jsonl", "row 2", "chosen"], "out"),
    ("data-empty-string", lambda e: e.train_data("d", [GOOD_ROW, GOOD_ROW, {**GOOD_ROW, "rejected": ""}]),
     ["d.jsonl", "row 3", "rejected", "empty"], "out"),
    ("data-bad-json-line", lambda e: e.train_data("d", [GOOD_ROW, GOOD_ROW, '{"prompt": "x", "chosen": '] ),
     ["d.jsonl", "line 3", "invalid JSON"], "out"),
    ("data-not-an-object", lambda e: e.train_data("d", [GOOD_ROW, "[1, 2]"]),
     ["d.jsonl", "2", "object"], "out"),
    ("data-mixed-formats", lambda e: e.train_data("d", [GOOD_ROW, {"prompt": CHAT, "chosen": " 1 2 3", "rejected": " 3 2 1"}]),
     ["d.jsonl", "row 2"], "out"),
    ("data-chat-no-role", lambda e: e.train_data("d", [{"prompt": [{"content": "hi"}],
                                                        "chosen": [{"role": "assistant", "content": "a"}],
                                                        "rejected": [{"role": "assistant", "content": "b"}]}]),
     ["d.jsonl", "row 1", "prompt", "role"], "out"),
    ("data-chat-bad-role", lambda e: e.train_data("d", [{"prompt": [{"role": "wizard", "content": "hi"}],
                                                         "chosen": [{"role": "assistant", "content": "a"}],
                                                         "rejected": [{"role": "assistant", "content": "b"}]}]),
     ["d.jsonl", "row 1", "wizard"], "out"),
    ("data-nothing-fits", lambda e: e.train_data("d", [{**GOOD_ROW, "chosen": " 1 2 3 4 5 6 7 8 9 1",
                                                       "rejected": " 1 2 3 4 5 6 7 8 9 2"}] * 3,
                                                 "train.max_length=8"),
     ["max_length 8", "dropped all 3 rows"], "out"),
    ("data-empty-file", lambda e: e.train_data("d", []), ["d.jsonl", "no rows"], "out"),
    ("data-missing-file", lambda e: e.train(f"dataset={e.tmp / 'nope.jsonl'}"), ["nope.jsonl", "no such file"], "out"),
    ("data-bad-suffix", lambda e: e.train(f"dataset={e.yaml('notdata', 'a: 1')}"), ["notdata.yaml", "unsupported"], "out"),
    # ----- configs -------------------------------------------------------------------------------
    ("cfg-unknown-key", lambda e: e.run_cmd("learning_rate=1e-3"), ["learning_rate", "unknown key"], "run"),
    ("cfg-unknown-nested-key", lambda e: e.run_cmd("sampling.temprature=0.5"), ["sampling.temprature", "unknown key"], "run"),
    ("cfg-wrong-type", lambda e: e.run_cmd("train.learning_rate=fast"), ["train.learning_rate", "fast"], "run"),
    ("cfg-wrong-literal", lambda e: e.run_cmd("pairs.strategy=best_of_all"), ["pairs.strategy"], "run"),
    ("cfg-simpo-with-reference", lambda e: e.run_cmd("objective=simpo", "reference=initial"),
     ["simpo", "reference"], "run"),
    ("cfg-train-simpo-with-reference-model", lambda e: e.train("objective=simpo", "reference_model_name_or_path=builtin:sort"),
     ["reference_model_name_or_path", "simpo"], "out"),
    ("cfg-negative-beta", lambda e: e.run_cmd("objective.beta=-0.1"), ["objective", "beta"], "run"),
    ("cfg-prompt-longer-than-max", lambda e: e.train("train.max_prompt_length=64", "train.max_length=64"),
     ["max_prompt_length", "max_length"], "out"),
    ("cfg-n1-without-dataset-responses", lambda e: e.run_cmd("sampling.n=1"), ["sampling.n", "2"], "run"),
    ("cfg-zero-rounds", lambda e: e.run_cmd("rounds=0"), ["rounds"], "run"),
    ("cfg-bad-yaml", lambda e: e.run_cmd(recipe=e.yaml("bad", "rounds: [1, 2\nseed: 3\n")), ["bad.yaml", "invalid YAML"], "run"),
    ("cfg-python-tag", lambda e: e.run_cmd(recipe=e.yaml("evil", "name: !!python/object/apply:os.system ['echo hi']\n")),
     ["evil.yaml", "invalid YAML"], "run"),
    ("cfg-not-a-mapping", lambda e: e.run_cmd(recipe=e.yaml("list", "- rounds: 1\n")), ["list.yaml", "mapping"], "run"),
    ("cfg-missing-recipe", lambda e: e.run_cmd(recipe=e.tmp / "missing.yaml"), ["missing.yaml", "not found"], "run"),
    ("cfg-missing-prompts-file", lambda e: e.run_cmd(f"prompts.train={e.tmp / 'p.jsonl'}", f"prompts.eval={e.tmp / 'p.jsonl'}"),
     ["p.jsonl", "no such file"], "run"),
    ("cfg-too-few-prompts", lambda e: e.run_cmd(f"prompts.train={e.data('few', [{'prompt': 'sort: 1 =>'}] * 3)}",
                                                f"prompts.eval={e.data('few', [{'prompt': 'sort: 1 =>'}] * 3)}"),
     ["prompts.train", "3 prompts"], "run"),
    # ----- models --------------------------------------------------------------------------------
    ("model-missing-path", lambda e: e.run_cmd(f"model_name_or_path={e.tmp / 'no-model'}"), ["no-model", "no such file"], "run"),
    ("model-no-tokenizer", lambda e: e.run_cmd(f"model_name_or_path={e.model_folder('notok', tokenizer=False)}"),
     ["notok", "tokenizer"], "run"),
    ("model-pickle-only", lambda e: e.run_cmd(f"model_name_or_path={e.model_folder('pkl', True, 'bin')}"),
     ["pkl", "allow_pickle"], "run"),
    ("model-chat-data-no-template", lambda e: e.train_data(
        "chat", [{"prompt": CHAT, "chosen": [{"role": "assistant", "content": " 1 2 3"}],
                  "rejected": [{"role": "assistant", "content": " 3 2 1"}]}] * 2),
     ["chat template"], "out"),
    # ----- judges --------------------------------------------------------------------------------
    ("judge-unknown-kind", lambda e: e.run_cmd("judge.kind=oracle"), ["judge", "unknown kind 'oracle'"], "run"),
    ("judge-bad-reference", lambda e: e.run_cmd("judge.kind=function", "judge.callable=no_such_module_xyz:score"),
     ["judge", "no_such_module_xyz"], "run"),
    ("judge-no-colon", lambda e: e.run_cmd("judge.kind=function", "judge.callable=os.path.join"),
     ["judge", "callable", "package.module:function"], "run"),
    ("judge-missing-attr", lambda e: e.run_cmd("judge.kind=function", f"judge.callable={e.judges}:nothing"),
     ["judge", "nothing"], "run"),
    ("judge-not-callable", lambda e: e.run_cmd("judge.kind=function", f"judge.callable={e.judges}:not_callable"),
     ["judge", "not_callable"], "run"),
    ("judge-unknown-option", lambda e: e.run_cmd("judge.kind=function", f"judge.callable={e.judges}:nan", "judge.temperature=1"),
     ["judge", "temperature", "unknown key"], "run"),
    ("judge-llm-key-unset", lambda e: e.run_cmd("judge.kind=llm", "judge.base_url=http://127.0.0.1:9/v1", "judge.model=m",
                                                "judge.api_key_env=SELM_TEST_UNSET_KEY"),
     ["SELM_TEST_UNSET_KEY", "not set"], "run"),
    ("judge-llm-bad-url", lambda e: e.run_cmd("judge.kind=llm", "judge.base_url=localhost:8000", "judge.model=m"),
     ["base_url", "http"], "run"),
    ("judge-non-numeric", lambda e: e.run_cmd("judge.kind=function", f"judge.callable={e.judges}:text"),
     ["judge function", "'very good' is not a number"], "run"),
    ("judge-nan", lambda e: e.run_cmd("judge.kind=function", f"judge.callable={e.judges}:nan"),
     ["judge function", "nan"], "run"),
    ("judge-wrong-count", lambda e: e.run_cmd("judge.kind=function", f"judge.callable={e.judges}:short", "judge.batched=true"),
     ["judge function", "returned", "for"], "run"),
]


def _no_temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name or p.name == ".write-probe"]


def _check_one_line(code: int, err: str, expected: list[str]) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("selm: error: "), line
    for part in expected:
        assert part.lower() in line.lower(), (part, line)
    return line


@pytest.mark.parametrize("case_id,argv,expected,left", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, case_id, argv, expected, left):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SELM_TEST_UNSET_KEY", raising=False)
    env = Env(tmp_path)
    code = main(argv(env))
    _check_one_line(code, capsys.readouterr().err, expected)
    if left == "out":
        assert not env.out.exists() or not any(env.out.iterdir()), list(env.out.rglob("*"))
    else:
        assert not env.run.exists(), list(env.run.rglob("*"))
    assert not list(tmp_path.glob("runs")), "a default run directory was created"


def test_case_count():
    assert len(CASES) >= 30


def test_judge_failing_mid_run_leaves_a_resumable_run(tmp_path, capsys, monkeypatch):
    """The judge breaks in round 1 (after round 0 was judged fine): exit 2, one line; once the
    judge works again, `selm run --resume` finishes and equals a run that never failed."""
    env = Env(tmp_path)
    argv = env.run_cmd("judge.kind=function", f"judge.callable={env.judges}:flaky", "rounds=2")
    assert main(argv) == 0
    good = [json.loads(x) for x in (env.run / "metrics.jsonl").read_text().splitlines()]
    shutil.rmtree(env.run)
    capsys.readouterr()

    import selm.judges.callables as callables
    from selm.io import FAULT_ENV  # noqa: F401  (the module exists; the hook is not used here)

    calls = {"n": 0}
    real = callables.call_per_item

    def breaking(fn, items):  # round 0's evaluate and round 1's judge are fine; then the judge breaks
        calls["n"] += 1
        if calls["n"] >= 4:
            monkeypatch.setenv("SELM_TEST_JUDGE_BROKEN", "1")
        return real(fn, items)

    monkeypatch.setattr("selm.judges.function.call_per_item", breaking)
    code = main(argv)
    line = _check_one_line(code, capsys.readouterr().err, ["judge function", "nan"])
    assert "prompt" in line or "item" in line
    assert not _no_temporaries(env.run)
    assert not (env.run / "metrics.jsonl").exists() or len((env.run / "metrics.jsonl").read_text().splitlines()) < 3
    monkeypatch.delenv("SELM_TEST_JUDGE_BROKEN")
    monkeypatch.setattr("selm.judges.function.call_per_item", real)
    assert main(["run", "--quiet", "--resume", str(env.run)]) == 0
    resumed = [json.loads(x) for x in (env.run / "metrics.jsonl").read_text().splitlines()]
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith(TIMING_PREFIXES)} for r in rows]  # noqa: E731
    assert strip(resumed) == strip(good)


@pytest.mark.parametrize("argv_fn,expected", [
    (lambda e: ["run", "--output", str(e.run), "train.learning_rate=fast"], ["train.learning_rate"]),
    (lambda e: ["run", "--output", str(e.run), "judge.kind=function", f"judge.callable={e.judges}:text", *RUN_SMALL],
     ["not a number"]),
], ids=["config", "judge-mid-run"])
def test_subprocess_shows_no_traceback(tmp_path, argv_fn, expected):
    env = Env(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "selm", *argv_fn(env), "--quiet"], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=300)
    err_lines = [x for x in proc.stderr.splitlines() if x.strip() and not x.startswith(("WARNING", "W0", "I0"))]
    _check_one_line(proc.returncode, "\n".join(err_lines), expected)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
