"""Model size on disk and in memory."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn


def directory_size_mb(path: str | os.PathLike[str], pattern: str = "*.safetensors") -> float:
    """Total size in MB (1e6 bytes) of the weight files of a saved model directory."""
    return sum(p.stat().st_size for p in Path(path).glob(pattern)) / 1e6


def state_size_mb(model: nn.Module) -> float:
    """Bytes of distinct tensors in the state dict (tied tensors counted once), in MB."""
    seen: set[int] = set()
    total = 0
    for tensor in model.state_dict().values():
        ptr = tensor.untyped_storage().data_ptr()
        if ptr not in seen:
            seen.add(ptr)
            total += tensor.untyped_storage().nbytes()
    return total / 1e6
