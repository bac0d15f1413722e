"""Progress bars for long work: tqdm on a terminal, silent elsewhere (CI, pipes, logs)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(
    iterable: Iterable[T],
    desc: str,
    unit: str = "it",
    enabled: bool = True,
    total: int | None = None,
) -> Iterable[T]:
    """Wrap ``iterable`` in a bar shown only when ``enabled`` and stderr is a terminal."""
    return tqdm(
        iterable, desc=desc, unit=unit, total=total, leave=False, disable=None if enabled else True
    )


def hide_library_bars() -> None:
    """Hide the bars Hugging Face libraries draw on their own (e.g. "Loading weights").

    They ignore our ``enabled`` switch and draw even off a terminal, where they would bury the
    one-line error of a failed command. Affects the whole process (the CLI calls it once).
    """
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read when huggingface_hub is imported
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()
