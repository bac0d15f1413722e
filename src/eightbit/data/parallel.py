"""Run independent batches in parallel workers, each with its share of the intra-op threads.

Bhandare et al. 2019 (section 5) run several small batches side by side instead of one batch
on every core: a decoder step on a few sentences does not keep many threads busy. Workers are
threads (PyTorch releases the GIL inside its ops, and the model is shared, not copied);
results come back in input order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

from eightbit.errors import EightbitError

T = TypeVar("T")
R = TypeVar("R")


@contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """Set PyTorch's intra-op thread count for the duration of the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def map_in_workers(
    fn: Callable[[T], R], items: Sequence[T], workers: int, total_threads: int | None = None
) -> Iterator[R]:
    """``fn(item)`` for every item, in order, on ``workers`` threads that share
    ``total_threads`` (default: PyTorch's current count) intra-op threads equally."""
    if workers < 1:
        raise EightbitError(f"workers must be at least 1, got {workers}")
    total = total_threads or torch.get_num_threads()
    if workers == 1:
        with intra_op_threads(total):
            yield from map(fn, items)
        return
    with intra_op_threads(max(1, total // workers)), ThreadPoolExecutor(workers) as pool:
        yield from pool.map(fn, items)
