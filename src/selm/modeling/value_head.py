"""PPO's critic on the policy's trunk: one linear layer from the decoder's hidden state to a value.

V(x, y_<t) is read from the hidden state at position t−1, the one that predicts token t (the same
[M, H] states the log-prob engine keeps), so the critic costs one [H] dot product per response
token and no second decoder. Saved beside the policy as ``value_head.safetensors``.
"""

from __future__ import annotations

from pathlib import Path

import torch

FILE = "value_head.safetensors"


class ValueHead(torch.nn.Module):
    """hidden [M, H] -> values [M], reward units.

    Zero-initialised: the first round's values are 0, so GAE's first advantages are the plain
    reward-to-go rather than a random critic's noise.
    """

    def __init__(self, hidden_size: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.linear = torch.nn.Linear(hidden_size, 1, dtype=dtype)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor, batch: object = None) -> torch.Tensor:
        """hidden [M, H] -> [M]; ``batch`` is unused (a separate value model reads it instead)."""
        return self.linear(hidden.to(self.linear.weight.dtype)).squeeze(-1)


def save_value_head(head: ValueHead, folder: str | Path) -> None:
    """Write ``head``'s weights into ``folder`` (a policy or checkpoint folder being built)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}, str(Path(folder) / FILE))


def load_value_head(folder: str | Path, hidden_size: int) -> ValueHead | None:
    """The head saved in ``folder``, or None when there is none (the first round)."""
    from safetensors.torch import load_file

    path = Path(folder) / FILE
    if not path.is_file():
        return None
    state = load_file(str(path))
    head = ValueHead(hidden_size, dtype=state["linear.weight"].dtype)
    head.load_state_dict(state)
    return head
