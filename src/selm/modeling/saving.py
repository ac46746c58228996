"""Saving a model and its tokenizer in Hugging Face format without a half-written folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch


def save_model_atomically(model: torch.nn.Module, tokenizer: Any, output_dir: Path,
                          state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """save_pretrained into a temp folder, then move each file into ``output_dir``.

    ``state_dict``: the weights to write instead of the module's own (a sharded module's
    consolidated weights, ``model`` then only gives the config and the format).
    """
    tmp = output_dir / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
    tokenizer.save_pretrained(tmp)
    for file in tmp.iterdir():
        os.replace(file, output_dir / file.name)
    tmp.rmdir()
