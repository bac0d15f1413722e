"""Resumable training state in safetensors + JSON (no pickle): model, AdamW moments, RNG, step.

Written atomically: a new checkpoint directory is staged, then renamed over the old one, so an
interruption at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            tensors[f"{index}.{key}"] = torch.as_tensor(value).clone()
    return tensors, {"param_groups": state["param_groups"]}


def save_checkpoint(
    directory: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    progress: dict[str, Any],
) -> Path:
    """Atomically write the full training state to ``directory``."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model_state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(model_state, str(staging / MODEL_FILE))
        opt_tensors, opt_meta = _optimizer_tensors(optimizer)
        opt_tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():  # dropout on a GPU draws from the device's generator
            opt_tensors["rng.cuda"] = torch.cuda.get_rng_state()
        save_file(opt_tensors, str(staging / OPTIMIZER_FILE))
        (staging / STATE_FILE).write_text(json.dumps({**progress, "optimizer": opt_meta}, indent=1))
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def load_checkpoint(
    directory: str | os.PathLike[str], model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore model, optimizer and RNG from ``directory``; returns the saved progress."""
    path = Path(directory)
    progress = json.loads((path / STATE_FILE).read_text())
    model.load_state_dict(load_file(str(path / MODEL_FILE)))
    tensors = load_file(str(path / OPTIMIZER_FILE))
    torch.set_rng_state(tensors.pop("rng.torch"))
    cuda_rng = tensors.pop("rng.cuda", None)
    if cuda_rng is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda_rng)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict(
        {"state": state, "param_groups": progress.pop("optimizer")["param_groups"]}
    )
    return progress
