"""Reward-model training: learning an easy preference, the judge loading the result (single and
ensemble), and bad input through the CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from selm.cli import main
from selm.judges import build_judge
from selm.modeling.tiny import build_tiny_model, build_tokenizer
from selm.reward_model import RewardModelConfig, train_reward_model


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny causal LM + tokenizer saved as a local base model."""
    path = tmp_path_factory.mktemp("base")
    tok = build_tokenizer(["question number 1 2 3 4 5 6 7 8 9", "a great answer", "a poor answer"], vocab_size=300)
    build_tiny_model(len(tok), hidden_size=32, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                     eos_token_id=tok.eos_token_id).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """An easy preference set: the chosen response says 'great', the rejected one 'poor'."""
    rng = random.Random(0)
    rows = []
    for i in range(96):
        words = " ".join(str(rng.randrange(10)) for _ in range(rng.randrange(1, 4)))
        rows.append({"prompt": f"question {words}?", "chosen": f" a great answer {words}",
                     "rejected": f" a poor answer {words}", "gap": 1.0})
    path = tmp_path_factory.mktemp("data") / "prefs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(base: Path, data: Path, out: Path, **kw) -> RewardModelConfig:
    settings = dict(model_name_or_path=str(base), dataset=str(data), eval_split_ratio=0.25, learning_rate=3e-3,
                    num_train_epochs=2, per_device_train_batch_size=8, max_length=32, output_dir=str(out))
    return RewardModelConfig(**{**settings, **kw})


@pytest.fixture(scope="module")
def trained(base, data, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("rm")
    return out, train_reward_model(_config(base, data, out, margin_column="gap", label_smoothing=0.05), progress=False)


def test_learns_an_easy_preference(trained):
    out, summary = trained
    assert summary["train/accuracy"] > 0.9 and summary["eval/accuracy"] > 0.9
    for name in ("model.safetensors", "config.json", "tokenizer.json", "train_log.jsonl", "train_results.json"):
        assert (out / name).is_file(), name
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(out).num_labels == 1


def test_judge_scores_with_the_trained_model(trained):
    from transformers import AutoModelForSequenceClassification

    out, _ = trained
    judge = build_judge({"kind": "reward_model", "path": str(out), "device": "cpu", "max_length": 32})
    prompts = ["question 3 4?"] * 2
    scores = judge.score(prompts, [" a great answer 3 4", " a poor answer 3 4"])
    assert scores[0] > scores[1]
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    ids = torch.tensor([judge.encode(prompts[:1], [" a great answer 3 4"])[0]])
    with torch.no_grad():
        assert scores[0] == pytest.approx(float(model(input_ids=ids).logits[0, 0]), rel=1e-5)


def test_ensemble_members_and_mean_minus_k_std(base, data, tmp_path):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "ens"
    summary = train_reward_model(_config(base, data, out, ensemble_size=2, bootstrap=True, num_train_epochs=0.5),
                                 progress=False)
    assert len(summary["members"]) == 2 and (out / "member-1" / "model.safetensors").is_file()
    prompts, responses = ["question 1?"], [" a great answer 1"]
    judge = build_judge({"kind": "reward_model", "path": str(out), "device": "cpu", "ensemble_k": 0.5})
    ids = torch.tensor(judge.encode(prompts, responses))
    member = []
    for m in range(2):
        model = AutoModelForSequenceClassification.from_pretrained(out / f"member-{m}").eval()
        with torch.no_grad():
            member.append(float(model(input_ids=ids).logits[0, 0]))
    mean = sum(member) / 2
    std = abs(member[0] - member[1]) / 2
    assert member[0] != member[1]  # different seeds and resamples
    assert judge.score(prompts, responses)[0] == pytest.approx(mean - 0.5 * std, rel=1e-5)


def test_missing_column_is_one_line_exit_2(base, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "q", "chosen": " a"}) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model_name_or_path: {base}\ndataset: {bad}\noutput_dir: {tmp_path / 'o'}\n")
    assert main(["reward-model", "train", str(recipe), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rejected" in err[0] and str(bad) in err[0]


def test_missing_margin_names_the_row(base, data, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model_name_or_path: {base}\ndataset: {data}\noutput_dir: {tmp_path / 'o'}\n")
    assert main(["reward-model", "train", str(recipe), "margin_column=nope", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "row 1" in err[0] and "'nope'" in err[0]
