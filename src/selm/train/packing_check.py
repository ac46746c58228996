"""Can this model be trained on packed (padding-free) batches? Checked, not assumed.

A packed batch has no attention mask: the sequence boundaries are where ``position_ids`` restart
at 0, and transformers 5 turns them into a block-diagonal causal mask (sdpa, eager, flex; sliding
windows counted per sequence) or variable-length flash-attention calls (one row only). A model
that builds its own mask without looking at ``position_ids`` (older or remote modeling code) would
silently let every sequence attend to the ones before it in its row. So before training, a few
short sequences run once packed and once each on their own; the trainer packs only if the hidden
states agree.
"""

from __future__ import annotations

import warnings

import torch

from selm.engine import PackingLayout, pack_sequences, unwrap_causal_lm

# Probe sequence lengths: under the "rows" layout they give a row of two sequences (5 + 2, the
# second must not see the first) and a row ending in filler (4 + 4 filler).
PROBE_LENGTHS = (8, 5, 2, 4)
# Largest accepted ‖packed − alone‖ / ‖alone‖ of the decoder's hidden states. Contamination moves
# them by O(1); rounding in a half-precision model by well under 1e-2.
TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-4}
HALF_TOLERANCE = 2e-2


def packing_layout(model: torch.nn.Module) -> PackingLayout:
    """``"one_row"`` for flash-attention backends (they read boundaries from a single row of
    ``position_ids``, and their cost is linear in the sequences' lengths), else ``"rows"``."""
    implementation = str(getattr(unwrap_causal_lm(model).config, "_attn_implementation", None) or "")
    return "one_row" if "flash" in implementation else "rows"


@torch.no_grad()
def packing_error(model: torch.nn.Module, layout: PackingLayout) -> float:
    """Largest relative difference between the decoder's hidden states of the probe sequences
    run packed in ``layout`` and run one at a time (no padding). Unitless; ~1e-7 in float32 when
    the model isolates packed sequences, O(1) when it does not.
    """
    lm = unwrap_causal_lm(model)
    decoder = lm.get_decoder()
    device = next(lm.parameters()).device
    vocab = lm.get_input_embeddings().num_embeddings
    g = torch.Generator().manual_seed(0)
    sequences = [(torch.randint(0, vocab, (n - 1,), generator=g).tolist(),
                  torch.randint(0, vocab, (1,), generator=g).tolist()) for n in PROBE_LENGTHS]
    packed = pack_sequences(sequences, pad_token_id=0, layout=layout).to(device)
    was_training = lm.training
    lm.eval()
    try:
        hidden = decoder(**packed.decoder_inputs(), use_cache=False).last_hidden_state.float()
        worst = 0.0
        for i, (prompt, response) in enumerate(sequences):
            ids = torch.tensor([[*prompt, *response]], device=device)
            alone = decoder(input_ids=ids, use_cache=False).last_hidden_state[0].float()
            got = hidden[packed.sequence_ids == i]
            worst = max(worst, float((got - alone).norm() / alone.norm().clamp_min(1e-12)))
    finally:
        lm.train(was_training)
    return worst


def resolve_packing(padding_free: bool, *models: torch.nn.Module) -> PackingLayout | None:
    """The packing layout to train with, or None for padded batches.

    Args:
        padding_free: the user's switch (``TrainingArguments.padding_free``).
        models: the policy and, when it is a separate model, the reference; all must pass.

    Returns:
        None when ``padding_free`` is False or a model fails the check (then with a warning
        naming the model class and the measured difference), else the layout of the first model.
    """
    if not padding_free:
        return None
    layout = packing_layout(models[0])
    for model in models:
        dtype = next(unwrap_causal_lm(model).parameters()).dtype
        error = packing_error(model, layout)
        if error > TOLERANCE.get(dtype, HALF_TOLERANCE):
            name = type(unwrap_causal_lm(model)).__name__
            implementation = getattr(unwrap_causal_lm(model).config, "_attn_implementation", None)
            warnings.warn(
                f"padding_free: {name} (attention {implementation!r}) does not keep packed sequences apart "
                f"(relative difference {error:.2g} from running them one by one); training on padded "
                f"batches instead. Set train.padding_free=false to silence this.", stacklevel=2)
            return None
    return layout
