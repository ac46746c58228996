"""The CLI: user errors are one line on stderr with exit code 2; --debug shows the traceback."""

import subprocess
import sys

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
