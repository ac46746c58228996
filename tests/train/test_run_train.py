"""`selm train` end to end on the shipped preference file with the built-in starting model."""

import json
from pathlib import Path

import torch

from selm.cli import main

DATA = Path(__file__).parents[2] / "examples" / "data" / "sort-preferences.jsonl"


def recipe(tmp_path, extra="", top=""):
    path = tmp_path / "recipe.yaml"
    path.write_text(f"""{top}model_name_or_path: builtin:sort
dataset: {DATA}
eval_split_ratio: 0.1
objective: {{name: selm, beta: 0.1, alpha: 0.001}}
output_dir: {tmp_path / 'out'}
train: {{learning_rate: 1.0e-3, per_device_train_batch_size: 16, max_steps: 6, save_steps: 3, max_length: 64,
        logging_steps: 1, warmup_ratio: 0.0{extra}}}
""")
    return path


def test_train_saves_a_loadable_hf_model(tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert main(["train", str(recipe(tmp_path)), "--quiet"]) == 0
    out = tmp_path / "out"
    assert "done: 6 steps" in capsys.readouterr().out
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.vocab_size >= len(tokenizer)
    results = json.loads((out / "train_results.json").read_text())
    assert results["global_step"] == 6 and 0 <= results["eval/rewards/accuracies"] <= 1
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "loss" in e] == [1, 2, 3, 4, 5, 6]
    assert not list(out.glob(".final.tmp"))


def test_train_with_lora_saves_an_adapter(tmp_path):
    assert main(["train", str(recipe(tmp_path, top="lora: {r: 4, alpha: 8}\n")), "--quiet"]) == 0
    out = tmp_path / "out"
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()


def test_train_resume_continues_from_the_last_checkpoint(tmp_path, capsys):
    path = recipe(tmp_path)
    assert main(["train", str(path), "--quiet", "train.max_steps=3", "train.save_steps=2"]) == 0
    first = torch.load(tmp_path / "out" / "checkpoint-2" / "rng.pt", weights_only=True)
    assert first is not None
    assert main(["train", str(path), "--quiet", "--resume", "train.max_steps=3", "train.save_steps=2"]) == 0
    printed = capsys.readouterr().out
    assert "resuming from" in printed and "checkpoint-2" in printed and "done: 3 steps" in printed
    log = [json.loads(x) for x in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "loss" in e] == [1, 2, 3]


def test_a_failed_start_writes_nothing_and_a_trained_model_is_not_overwritten(tmp_path, capsys):
    # An objective the data cannot feed fails before training: no output folder, no config.yaml.
    assert main(["train", str(recipe(tmp_path)), "--quiet", "objective=normalized_margin", "train.fsdp=true"]) == 2
    assert "normalized_margin" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    path = recipe(tmp_path)
    assert main(["train", str(path), "--quiet", "train.max_steps=1"]) == 0
    before = (tmp_path / "out" / "model.safetensors").read_bytes()
    assert main(["train", str(path), "--quiet", "train.max_steps=1", "train.learning_rate=0.1"]) == 2
    err = capsys.readouterr().err
    assert "output_dir" in err and "already holds a trained model" in err and "--overwrite" in err
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == before
    assert main(["train", str(path), "--quiet", "--overwrite", "train.max_steps=1", "train.learning_rate=0.1"]) == 0
    assert (tmp_path / "out" / "model.safetensors").read_bytes() != before
