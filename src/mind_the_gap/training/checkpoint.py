"""Checkpoints as safetensors: weights and buffers plus JSON metadata, written atomically, never pickled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from mind_the_gap.files import write_atomically


def save_checkpoint(path: Path, model: nn.Module, metadata: dict[str, Any]) -> None:
    # safetensors refuses tensors that share memory or are not contiguous; a state dict copy avoids both.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    write_atomically(path, lambda temp: save_file(state, str(temp), metadata={"meta": json.dumps(metadata)}))


def load_checkpoint(path: Path, model: nn.Module | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict and metadata at ``path``; loads the weights into ``model`` when given."""
    try:
        state = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            metadata = json.loads((f.metadata() or {}).get("meta", "{}"))
    except (SafetensorError, OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from exc
    if model is not None:
        model.load_state_dict(state)
    return state, metadata
