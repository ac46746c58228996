"""`selm train` sharded with FSDP2 over 2 gloo processes on CPU ends where 1 unsharded process
with the same global batch does: full fine-tuning of a model with a tied output layer (with
gradient checkpointing and accumulation), LoRA, sharded checkpoints, resume after SIGKILL, the
reference log-probs split over the processes, and the non-finite-loss guard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

STEPS, GLOBAL_BATCH, LAST_BATCH, LEARNING_RATE = 29, 8, 5, 1e-3
FSDP = ", fsdp: true, gradient_checkpointing: true, save_steps: 10"


@pytest.fixture(scope="module")
def full_runs(tied_runs, tied_model, launch, sort_recipe) -> Path:
    """Next to the 1-process run on the tied model (``one``): 2 FSDP processes (``two``)."""
    launch(2, ["train", str(sort_recipe(tied_runs, "two", 2, FSDP, model=tied_model)), "--quiet"])
    return tied_runs


def test_full_finetune_matches_one_process(full_runs, tied_model, same_training, same_step_metrics, read_train_log):
    one, two = (load_file(full_runs / n / "model.safetensors") for n in ("one", "two"))
    same_training(one, two, load_file(tied_model / "model.safetensors"), steps=STEPS, learning_rate=LEARNING_RATE)
    # As under DDP (tests/distributed/test_train_ddp.py): the global batch's metrics, to float32
    # rounding of the same sums plus the weights' gap.
    logs = read_train_log(full_runs / "one"), read_train_log(full_runs / "two")
    assert [e["step"] for e in logs[1]] == list(range(1, STEPS + 1))
    same_step_metrics(*logs)
    results = [json.loads((full_runs / n / "train_results.json").read_text()) for n in ("one", "two")]
    assert results[1]["eval/loss"] == pytest.approx(results[0]["eval/loss"], rel=1e-4)


def test_saved_model_is_one_consolidated_folder(full_runs):
    from transformers import AutoModelForCausalLM

    folder = full_runs / "two"
    assert sorted(p.name for p in folder.glob("*.safetensors")) == ["model.safetensors"]
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    saved = load_file(folder / "model.safetensors")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved.get(name, saved.get("model.embed_tokens.weight"))), name
    assert not list(folder.glob(".*tmp*"))


def test_checkpoints_are_sharded_per_process(full_runs):
    checkpoints = sorted(p.name for p in (full_runs / "two").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-10", "checkpoint-20"]
    for name in checkpoints:
        folder = full_runs / "two" / name
        # Each process wrote its own shard of the weights and AdamW state; no whole copy anywhere.
        assert len(list((folder / "sharded").glob("*.distcp"))) == 2, name
        assert not (folder / "model").exists() and not (folder / "optimizer.pt").exists()
        assert {p.name for p in folder.iterdir()} == {"sharded", "scheduler.pt", "rng.pt", "trainer_state.json"}


def test_reference_logps_are_split_and_cached_like_one_process(full_runs):
    """The same cache file (its key holds the reference's fingerprint, taken before sharding) with
    the same values: each pair's log-probs summed over ≤ 12 tokens in float32 in differently
    packed batches agree to a few float32 ulps of their ~10-nat size (1e-5 leaves a margin)."""
    files = [sorted((full_runs / "cache" / n).glob("*.safetensors")) for n in ("one", "two")]
    assert [f.name for f in files[0]] == [f.name for f in files[1]] and len(files[0]) == 1
    one, two = load_file(files[0][0]), load_file(files[1][0])
    assert one.keys() == two.keys() == {"chosen", "rejected", "explore"}
    for role in one:
        assert one[role].shape == (256,)
        torch.testing.assert_close(two[role], one[role], rtol=1e-5, atol=1e-5)


def test_lora_matches_one_process(lora_runs, launch, lora_recipe, same_adapter):
    launch(2, ["train", str(lora_recipe(lora_runs, "fsdp", 2, ", fsdp: true")), "--quiet"])
    same_adapter(lora_runs / "one", lora_runs / "fsdp", steps=STEPS, learning_rate=LEARNING_RATE)


def test_resume_after_sigkill_equals_the_uninterrupted_run(full_runs, tied_model, sort_recipe, kill_when,
                                                           launch, read_train_log, same_bits):
    cut = full_runs / "cut"
    recipe = sort_recipe(full_runs, "cut", 2, FSDP, model=tied_model)
    kill_when(2, ["train", str(recipe), "--quiet"], cut / "checkpoint-10" / "trainer_state.json")
    assert not (cut / "model.safetensors").exists()
    resumed = launch(2, ["train", str(recipe), "--resume"])
    assert "resuming from" in resumed.stdout and "checkpoint-" in resumed.stdout
    # The same 2 processes do the same operations in the same order, cut or not: the same bits.
    same_bits(full_runs / "two" / "model.safetensors", cut / "model.safetensors")
    assert [e["step"] for e in read_train_log(cut)] == list(range(1, STEPS + 1))


def test_nonfinite_losses_stop_every_process_with_a_sharded_checkpoint(tmp_path, train_on_nan_losses):
    proc = train_on_nan_losses(tmp_path, ", fsdp: true")
    assert proc.returncode != 0
    assert "3 non-finite losses in a row at step 3" in proc.stdout + proc.stderr
    assert len(list((tmp_path / "nan" / "checkpoint-3" / "sharded").glob("*.distcp"))) == 2
    assert not (tmp_path / "nan" / "model.safetensors").exists()
