"""PreferenceTrainer: exact loss scaling, learning, reference cache, resume, LoRA, guards."""

import json

import pytest
import torch
import torch.nn.functional as F

from selm.data import collate_preference_batch
from selm.engine import ReferencePolicy, naive_sequence_logps
from selm.modeling.tiny import build_tiny_model
from selm.objectives import ObjectiveOutput, build_objective
from selm.objectives.base import Objective
from selm.train.config import LoraConfig, TrainingArguments
from selm.train.reference_cache import compute_reference_logps
from selm.train.trainer import NonFiniteLossError, PreferenceTrainer, latest_checkpoint


def args(**kw):
    base = dict(learning_rate=1e-3, per_device_train_batch_size=4, warmup_ratio=0.0, lr_scheduler_type="constant",
                logging_steps=1, max_grad_norm=None, seed=0)
    base.update(kw)
    return TrainingArguments(**base)


def frozen_copy(model):
    ref = build_tiny_model(300)
    ref.load_state_dict(model.state_dict())
    return ReferencePolicy(ref.eval().requires_grad_(False))


def trainer_for(model, pairs, tmp_path, objective="dpo", **kw):
    obj = build_objective(objective)
    reference = frozen_copy(model) if obj.needs_reference else None
    kw.setdefault("reference_cache_dir", str(tmp_path / "cache"))
    return PreferenceTrainer(model, obj, args(**kw), pairs, pad_token_id=0, reference=reference,
                             output_dir=tmp_path / "out", progress=False)


@pytest.mark.parametrize("micro,accumulation", [(4, 1), (2, 2), (1, 4), (3, 2)])
def test_accumulated_gradient_equals_float64_full_batch_gradient(tmp_path, make_pairs, micro, accumulation):
    """Same global batch, any (micro-batch, accumulation) split -> the gradient of the mean loss."""
    pairs = make_pairs(4)
    model = build_tiny_model(300)
    trainer = trainer_for(model, pairs, tmp_path, per_device_train_batch_size=micro,
                          gradient_accumulation_steps=accumulation)
    trainer.precompute_reference()
    n_global, micro_batches = trainer.windows(0)[0]
    assert n_global == 4 and sorted(i for m in micro_batches for i in m) == [0, 1, 2, 3]
    ok, _, _ = trainer.accumulate(micro_batches, n_global)
    assert ok
    got = [p.grad.clone() for p in model.parameters()]

    # Independent computation: float64 copy, full logits, DPO written out by hand, mean over 4.
    m64 = build_tiny_model(300).double()
    m64.load_state_dict({k: v.double() for k, v in build_tiny_model(300).state_dict().items()})
    batch = collate_preference_batch(pairs, 0)
    logps = naive_sequence_logps(m64, batch)
    with torch.no_grad():
        ref = naive_sequence_logps(m64, batch)
    h = (logps[:4] - ref[:4]) - (logps[4:] - ref[4:])
    loss = -F.logsigmoid(0.1 * h).mean()
    expected = torch.autograd.grad(loss, list(m64.parameters()))
    for g, e in zip(got, expected):
        torch.testing.assert_close(g.double(), e, atol=1e-7, rtol=1e-4)


def test_dpo_learns_synthetic_preferences(tmp_path, make_pairs):
    pairs = make_pairs(32)
    trainer = trainer_for(build_tiny_model(300), pairs, tmp_path, max_steps=40, learning_rate=3e-3,
                          per_device_train_batch_size=8)
    result = trainer.train()
    history = [h for h in result.log_history if "rewards/accuracies" in h]
    first, last = history[0], history[-1]
    assert last["rewards/accuracies"] > 0.9
    assert last["rewards/margins"] > first["rewards/margins"] + 0.5
    log = [json.loads(line) for line in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == list(range(1, 41))


def test_reference_cache_hits_and_invalidates(tmp_path, make_pairs):
    pairs = make_pairs(8)
    model = build_tiny_model(300)
    first = trainer_for(model, pairs, tmp_path, max_steps=1)
    first.precompute_reference()
    assert first.reference_cache_hit is False
    second = trainer_for(build_tiny_model(300), pairs, tmp_path, max_steps=1)
    second.precompute_reference()
    assert second.reference_cache_hit is True
    # cached == recomputed
    recomputed = compute_reference_logps(frozen_copy(build_tiny_model(300)), pairs, 0, progress=False,
                                         batch_size=second.args.per_device_eval_batch_size, packing=second.packing)
    for key in ("chosen", "rejected"):
        torch.testing.assert_close(second.reference_logps[key], recomputed[key], atol=0, rtol=0)
    # another reference (different weights) or other data -> recomputed
    other = trainer_for(build_tiny_model(300, seed=5), pairs, tmp_path, max_steps=1)
    other.precompute_reference()
    assert other.reference_cache_hit is False
    edited = pairs[:-1] + [pairs[-1].__class__(index=99, prompt_ids=pairs[-1].prompt_ids,
                                               chosen_ids=[11, 2], rejected_ids=pairs[-1].rejected_ids)]
    changed = trainer_for(build_tiny_model(300), edited, tmp_path, max_steps=1)
    changed.precompute_reference()
    assert changed.reference_cache_hit is False


def test_resume_from_checkpoint_reproduces_uninterrupted_training(tmp_path, make_pairs):
    pairs = make_pairs(24)
    full = trainer_for(build_tiny_model(300), pairs, tmp_path / "a", max_steps=6, save_steps=3)
    full.train()
    checkpoint = tmp_path / "a" / "out" / "checkpoint-3"
    assert latest_checkpoint(tmp_path / "a" / "out") == checkpoint
    resumed = trainer_for(build_tiny_model(300), pairs, tmp_path / "b", max_steps=6, save_steps=3)
    resumed.train(resume_from_checkpoint=checkpoint)
    assert resumed.global_step == 6
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)


def test_lora_reference_is_the_model_with_adapters_disabled(tmp_path, make_pairs):
    from selm.modeling.lora import apply_lora

    pairs = make_pairs(16)
    model = apply_lora(build_tiny_model(300), LoraConfig(r=4, alpha=8))
    trainer = PreferenceTrainer(model, build_objective("dpo"), args(max_steps=5, learning_rate=1e-2), pairs, 0,
                                reference=ReferencePolicy(model, disable_adapters=True),
                                output_dir=tmp_path / "out", progress=False)
    result = trainer.train()
    assert result.metrics["rewards/margins"] != 0
    base = build_tiny_model(300)
    batch = collate_preference_batch(pairs, 0)
    with torch.no_grad(), model.disable_adapter():
        disabled = naive_sequence_logps(model, batch)
    torch.testing.assert_close(disabled, naive_sequence_logps(base, batch).detach(), atol=1e-6, rtol=0)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all("lora_" not in n for n in frozen)


class NaNObjective(Objective):
    name = "nan"
    requires = frozenset()

    def compute(self, batch):
        return ObjectiveOutput(losses=batch.policy_chosen_logps * float("nan"))


def test_nonfinite_losses_skip_then_stop_with_a_checkpoint(tmp_path, make_pairs):
    trainer = PreferenceTrainer(build_tiny_model(300), NaNObjective(), args(max_steps=10, max_nonfinite_steps=3),
                                make_pairs(8), 0, output_dir=tmp_path / "out", progress=False)
    before = [p.clone() for p in trainer.model.parameters()]
    with pytest.raises(NonFiniteLossError, match="3 non-finite losses in a row"):
        trainer.train()
    assert trainer.nonfinite_steps == 3
    assert latest_checkpoint(tmp_path / "out") is not None
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))


def test_selm_objective_uses_the_exploration_response(tmp_path, make_pairs):
    pairs = make_pairs(8, explore=True)
    trainer = trainer_for(build_tiny_model(300), pairs, tmp_path, objective={"name": "selm", "beta": 0.1, "alpha": 1.0},
                          max_steps=2)
    result = trainer.train()
    assert "logps/explore" in result.metrics and "loss/optimism" in result.metrics
    with pytest.raises(Exception, match="explore"):
        trainer_for(build_tiny_model(300), make_pairs(8), tmp_path, objective="selm", max_steps=1)


def test_tdpo_computes_kl_with_a_live_reference(tmp_path, make_pairs):
    trainer = trainer_for(build_tiny_model(300), make_pairs(8), tmp_path, objective="tdpo2", max_steps=2)
    result = trainer.train()
    assert trainer.reference is not None and trainer.reference_logps is None
    assert result.metrics["kl/chosen"] >= 0


def test_gradient_checkpointing_gives_the_same_gradients(tmp_path, make_pairs):
    pairs = make_pairs(4)
    grads = []
    for checkpointing in (False, True):
        model = build_tiny_model(300)
        trainer = trainer_for(model, pairs, tmp_path / str(checkpointing), gradient_checkpointing=checkpointing)
        trainer.precompute_reference()
        n_global, micro = trainer.windows(0)[0]
        trainer.accumulate(micro, n_global)
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_report_to_tensorboard_writes_event_files(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from selm.distributed import make_accelerator

    accelerator = make_accelerator(["tensorboard"], tmp_path, "run", {"a": 1})
    accelerator.log({"loss": 0.5}, step=1)
    accelerator.end_training()
    assert list(tmp_path.rglob("events.out.tfevents*"))


def test_lora_reference_fingerprint_ignores_adapters_but_not_base_weights():
    from selm.modeling.loading import model_fingerprint
    from selm.modeling.lora import apply_lora

    model = apply_lora(build_tiny_model(300), LoraConfig(r=4, alpha=8))
    before = model_fingerprint(model, exclude="lora_")
    full_before = model_fingerprint(model)
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "lora_B" in n).add_(1.0)
    assert model_fingerprint(model, exclude="lora_") == before
    assert model_fingerprint(model) != full_before
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "lora_" not in n).add_(1.0)
    assert model_fingerprint(model, exclude="lora_") != before


@pytest.mark.parametrize("objective", ["dpo", "selm", "tdpo2"])
def test_padding_free_gives_the_padded_gradients_and_reference(tmp_path, make_pairs, objective):
    """The packed path (default) and the padded path: same reference log-probs, same accumulated
    gradient, also for the exploration response (selm) and the live-reference KL (tdpo2)."""
    pairs = make_pairs(6, explore=True)
    grads, references = [], []
    for padding_free in (True, False):
        model = build_tiny_model(300)
        trainer = trainer_for(model, pairs, tmp_path / str(padding_free), objective=objective,
                              padding_free=padding_free, per_device_train_batch_size=3, gradient_accumulation_steps=2)
        assert trainer.packing == ("rows" if padding_free else None)
        trainer.precompute_reference()
        references.append(trainer.reference_logps)
        n_global, micro = trainer.windows(0)[0]
        ok, _, _ = trainer.accumulate(micro, n_global)
        assert ok
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    if objective == "tdpo2":
        assert references == [None, None]
    else:
        assert references[0].keys() == references[1].keys() >= {"chosen", "rejected"}
        for key in references[0]:
            torch.testing.assert_close(references[0][key], references[1][key], atol=1e-5, rtol=1e-6)


def test_group_by_length_keeps_similar_lengths_together(tmp_path, make_pairs):
    pairs = make_pairs(40)
    trainer = trainer_for(build_tiny_model(300), pairs, tmp_path, group_by_length=True,
                          per_device_train_batch_size=4, gradient_accumulation_steps=2)
    order = trainer.epoch_order(0)
    assert sorted(order) == list(range(40)) and order != trainer.epoch_order(1)
    length = [len(p.prompt_ids) + max(len(p.chosen_ids), len(p.rejected_ids)) for p in pairs]
    # 40 pairs fit in one sorting window: each global batch of 8 is a run of the sorted lengths, so
    # the batches' length ranges add up to at most the overall range (a random order's do not).
    def spread(order):
        return sum(max(length[i] for i in order[k:k + 8]) - min(length[i] for i in order[k:k + 8])
                   for k in range(0, 40, 8))
    assert spread(order) <= max(length) - min(length) < spread(trainer_for(
        build_tiny_model(300), pairs, tmp_path / "random", per_device_train_batch_size=4,
        gradient_accumulation_steps=2).epoch_order(0))
    n_global, micro = trainer.windows(0)[0]
    assert n_global == 8 and [i for m in micro for i in m] == order[:8]
