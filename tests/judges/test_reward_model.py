"""``reward_model`` judge: a tiny Llama reward model with its own tokenizer and chat template."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from selm.errors import ModelLoadError
from selm.judges import build_judge
from selm.modeling.tiny import build_tokenizer

# A template unlike the policy's ChatML-like one, so a mix-up would show.
RM_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
    "{% else %} {{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)
RM_CORPUS = ["[INST] what is two plus two? [/INST] four", "[INST] name a color [/INST] blue green red"]

PROMPTS = ["what is two plus two?", "name a color", "say something long please"]
RESPONSES = ["four", "blue", "here is a much longer answer with many more words in it"]


def make_rm(path: Path, num_labels: int = 1, pickle: bool = False) -> tuple[LlamaForSequenceClassification, object]:
    tok = build_tokenizer(RM_CORPUS, vocab_size=300, chat_template=RM_TEMPLATE)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=num_labels,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config).eval()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    if pickle:
        (path / "model.safetensors").unlink()
        torch.save(model.state_dict(), path / "pytorch_model.bin")
    return model, tok


@pytest.fixture(scope="module")
def rm(tmp_path_factory):
    path = tmp_path_factory.mktemp("rm")
    model, tok = make_rm(path)
    return path, model, tok


def direct_scores(model, ids_list):
    with torch.no_grad():
        return [float(model(input_ids=torch.tensor([ids])).logits[0, 0]) for ids in ids_list]


def test_scores_equal_direct_forward_with_own_template(rm):
    path, model, tok = rm
    judge = build_judge({"kind": "reward_model", "path": str(path), "batch_size": 2, "device": "cpu"})
    texts = judge.render(PROMPTS, RESPONSES)
    assert texts[0] == "<s>[INST] what is two plus two? [/INST] four</s>"
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert judge.encode(PROMPTS, RESPONSES) == ids
    assert len({len(x) for x in ids}) == 3  # different lengths: the batch is padded
    expected = direct_scores(model, ids)
    assert judge.score(PROMPTS, RESPONSES) == pytest.approx(expected, abs=1e-6)
    assert next(judge.model.parameters()).dtype == torch.float32
    assert not judge.model.training


def test_uses_its_own_tokenizer_not_the_policys(rm):
    path, _, tok = rm
    policy_tok = build_tokenizer()  # the policy's tokenizer: another vocab and another template
    judge = build_judge({"kind": "reward_model", "path": str(path), "device": "cpu"})
    assert judge.tokenizer.get_vocab() == tok.get_vocab()
    assert judge.tokenizer.get_vocab() != policy_tok.get_vocab()
    assert judge.tokenizer.chat_template == RM_TEMPLATE != policy_tok.chat_template


def test_plain_concatenation_without_template(rm):
    path, model, tok = rm
    judge = build_judge({"kind": "reward_model", "path": str(path), "use_chat_template": False, "device": "cpu"})
    assert judge.render(["Q: hi "], ["A: yo"]) == ["Q: hi A: yo"]
    ids = tok("Q: hi A: yo")["input_ids"]
    assert judge.score(["Q: hi "], ["A: yo"]) == pytest.approx(direct_scores(model, [ids]), abs=1e-6)


@pytest.mark.parametrize("side", ["right", "left"])
def test_truncation_to_max_length(rm, side):
    path, model, tok = rm
    judge = build_judge({"kind": "reward_model", "path": str(path), "max_length": 6,
                         "truncation_side": side, "device": "cpu"})
    full = tok(judge.render(PROMPTS, RESPONSES)[2], add_special_tokens=False)["input_ids"]
    kept = full[:6] if side == "right" else full[-6:]
    assert judge.encode(PROMPTS[2:], RESPONSES[2:]) == [kept]
    assert judge.score(PROMPTS[2:], RESPONSES[2:]) == pytest.approx(direct_scores(model, [kept]), abs=1e-6)


def test_missing_path_names_it(tmp_path):
    missing = tmp_path / "no-such-rm"
    with pytest.raises(ModelLoadError, match=f"judge 'reward_model': .*'{missing}': no such file or folder"):
        build_judge({"kind": "reward_model", "path": str(missing)})


def test_pickle_weights_need_opt_in(tmp_path):
    model, _ = make_rm(tmp_path, pickle=True)
    with pytest.raises(ModelLoadError, match=r"only safetensors weights load unless allow_pickle: true"):
        build_judge({"kind": "reward_model", "path": str(tmp_path), "device": "cpu"})
    judge = build_judge({"kind": "reward_model", "path": str(tmp_path), "allow_pickle": True, "device": "cpu"})
    ids = judge.encode(PROMPTS[:1], RESPONSES[:1])
    assert judge.score(PROMPTS[:1], RESPONSES[:1]) == pytest.approx(direct_scores(model, ids), abs=1e-6)


def test_multi_label_head_needs_label_index(tmp_path):
    model, _ = make_rm(tmp_path, num_labels=3)
    with pytest.raises(ModelLoadError, match=r"has 3 output labels; set label_index"):
        build_judge({"kind": "reward_model", "path": str(tmp_path), "device": "cpu"})
    judge = build_judge({"kind": "reward_model", "path": str(tmp_path), "label_index": 2, "device": "cpu"})
    ids = judge.encode(PROMPTS[:2], RESPONSES[:2])
    with torch.no_grad():
        expected = [float(model(input_ids=torch.tensor([x])).logits[0, 2]) for x in ids]
    assert judge.score(PROMPTS[:2], RESPONSES[:2]) == pytest.approx(expected, abs=1e-6)
