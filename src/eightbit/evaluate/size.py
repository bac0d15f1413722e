"""Model size on disk and in memory."""

from __future__ import annotations

import os
from pathlib import Path


def directory_size_mb(path: str | os.PathLike[str], pattern: str = "*.safetensors") -> float:
    """Total size in MB (1e6 bytes) of the weight files of a saved model directory."""
    return sum(p.stat().st_size for p in Path(path).glob(pattern)) / 1e6
