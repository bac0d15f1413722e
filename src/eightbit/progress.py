"""Progress bars for long work: tqdm on a terminal, silent elsewhere (CI, pipes, logs)."""

from __future__ import annotations

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
