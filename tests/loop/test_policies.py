"""The round policies: a cache that cannot hand out changed weights as an older round's, atomic saves,
π0 as a reference without a second copy under LoRA, and the EMA reference (arithmetic and resume)."""

import pytest
import torch

import selm.loop.policies as policies_module
from selm.loop.config import RunConfig
from selm.loop.policies import EMA_FILE, RoundPolicies, ema_state
from selm.modeling.tiny import build_tiny_model, build_tokenizer
from selm.rundir import RunDir


@pytest.fixture(scope="module")
def pi0_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pi0")
    tokenizer = build_tokenizer(vocab_size=300)
    build_tiny_model(len(tokenizer), hidden_size=32, num_hidden_layers=1).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def loads(monkeypatch):
    """The sources RoundPolicies loads models from, in order."""
    seen = []
    real = policies_module.load_causal_lm

    def counting(source, *args, **kwargs):
        seen.append(str(source))
        return real(source, *args, **kwargs)

    monkeypatch.setattr(policies_module, "load_causal_lm", counting)
    return seen


def _policies(pi0_dir, tmp_path, *overrides, live=False):
    config = RunConfig(**{"reference": "round_start", **dict(overrides)})
    tokenizer = build_tokenizer(vocab_size=300)
    return RoundPolicies(config, str(pi0_dir), tokenizer, RunDir(tmp_path / "run"), "cpu", is_main=True,
                         live_reference=live)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_ema_state_is_the_decayed_average_of_shared_tensors():
    previous = {"w": torch.tensor([1.0, 2.0], dtype=torch.float64), "gone": torch.ones(1)}
    current = {"w": torch.tensor([3.0, 6.0]), "new": torch.zeros(2)}
    state = ema_state(previous, current, 0.25)
    assert set(state) == {"w"} and state["w"].dtype == torch.float32
    torch.testing.assert_close(state["w"], torch.tensor([0.25 * 1 + 0.75 * 3, 0.25 * 2 + 0.75 * 6]))


def test_a_policy_given_out_for_training_is_never_handed_out_as_its_old_round(pi0_dir, tmp_path, loads):
    p = _policies(pi0_dir, tmp_path)
    model = p.policy(0)
    assert p.policy(0) is model and len(loads) == 1  # cached
    original = _state(model)
    trained = p.for_training(0)
    assert trained is model
    with torch.no_grad():
        for t in trained.parameters():
            t.add_(1.0)
    fresh = p.policy(0)  # the cache forgot the weights in training: π0 is loaded again
    assert fresh is not trained and len(loads) == 2
    for key, value in original.items():
        torch.testing.assert_close(fresh.state_dict()[key], value, atol=0, rtol=0, msg=key)


def test_save_writes_the_round_and_keeps_it_in_memory(pi0_dir, tmp_path, loads):
    p = _policies(pi0_dir, tmp_path)
    model = p.for_training(0)
    p.save(1, model)
    folder = tmp_path / "run" / "rounds" / "01" / "policy"
    assert p.path(1) == folder == p.saved_path(1) and p.saved_path(0) is None
    assert (folder / "config.json").is_file() and (folder / "tokenizer_config.json").is_file()
    assert not [f for f in folder.parent.iterdir() if ".tmp" in f.name]
    assert p.policy(1) is model and len(loads) == 1
    reloaded = _policies(pi0_dir, tmp_path).policy(1)  # a resumed run reads the saved weights
    for key, value in model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[key], value, atol=0, rtol=0, msg=key)


def test_initial_reference_is_one_frozen_copy(pi0_dir, tmp_path, loads):
    p = _policies(pi0_dir, tmp_path, ("reference", "initial"))
    ref = p.initial_reference()
    assert p.initial_reference().model is ref.model and len(loads) == 1
    assert not ref.disable_adapters and not any(t.requires_grad for t in ref.model.parameters())


def test_lora_initial_reference_is_the_policy_in_training_with_adapters_off(pi0_dir, tmp_path, loads):
    p = _policies(pi0_dir, tmp_path, ("reference", "initial"), ("lora", {"r": 2}))
    policy = p.for_training(0)
    ref = p.reference_for_round(1, policy)
    assert ref.model is policy and ref.disable_adapters and len(loads) == 1  # no second copy of π0


@pytest.mark.parametrize("live", [False, True])
def test_round_start_reference_copies_only_when_needed_live(pi0_dir, tmp_path, live):
    p = _policies(pi0_dir, tmp_path, live=live)
    policy = p.for_training(0)
    ref = p.reference_for_round(1, policy)
    assert (ref.model is policy) != live


def test_ema_reference_is_saved_per_round_and_reused_on_resume(pi0_dir, tmp_path):
    p = _policies(pi0_dir, tmp_path, ("reference", "ema"), ("reference_ema_decay", 0.25))
    policy = p.for_training(0)
    pi0 = _state(policy)
    p.reference_for_round(1, policy)  # π_ref,1 = π0, saved
    with torch.no_grad():
        for t in policy.parameters():
            t.add_(0.01)
    moved = _state(policy)
    ref2 = p.reference_for_round(2, policy).model.state_dict()
    for key in moved:
        torch.testing.assert_close(ref2[key], 0.25 * pi0[key] + 0.75 * moved[key], atol=1e-6, rtol=0, msg=key)
    assert (tmp_path / "run" / "rounds" / "02" / EMA_FILE).is_file()
    resumed = _policies(pi0_dir, tmp_path, ("reference", "ema"), ("reference_ema_decay", 0.25))
    again = resumed.reference_for_round(2, resumed.for_training(0)).model.state_dict()  # read back, not recomputed
    for key in moved:
        torch.testing.assert_close(again[key], ref2[key], atol=0, rtol=0, msg=key)


def test_a_round_fingerprint_is_hashed_once_and_never_outlives_its_weights(pi0_dir, tmp_path, loads, monkeypatch):
    from selm.modeling.loading import model_fingerprint

    hashed = []
    monkeypatch.setattr(policies_module, "model_fingerprint", lambda m: hashed.append(m) or model_fingerprint(m))
    p = _policies(pi0_dir, tmp_path)
    start = p.fingerprint(0)
    assert p.fingerprint(0) == start == model_fingerprint(p.policy(0)) and len(hashed) == 1
    model = p.for_training(0)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # trained in place
    p.save(1, model)
    assert p.fingerprint(1) == model_fingerprint(model) != start and len(hashed) == 2
    assert p.fingerprint(0) == start and len(hashed) == 3  # π0 loaded and hashed again
