"""Which activation positions count in calibration statistics (padding must not).

A model adapter knows the attention masks; observers sit deep inside the model. The adapter sets
the masks of the inputs it is about to run (``with observation_mask(src_mask, tgt_mask): ...``)
and every observer uses the mask whose shape equals its input's leading dims (batch, time). The
adapter keeps the shapes distinct (e.g. pads the target one step longer when lengths tie).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from torch import Tensor

_MASKS: ContextVar[tuple[Tensor, ...]] = ContextVar("eightbit_observation_masks", default=())


@contextmanager
def observation_mask(*masks: Tensor | None) -> Iterator[None]:
    """Within the block, observers ignore positions where the matching mask is False/0."""
    active = tuple(m.bool() for m in masks if m is not None)
    shapes = [tuple(m.shape) for m in active]
    if len(set(shapes)) != len(shapes):
        raise ValueError(f"observation masks must have distinct shapes, got {shapes}")
    token = _MASKS.set(active)
    try:
        yield
    finally:
        _MASKS.reset(token)


def current_mask(x: Tensor) -> Tensor | None:
    """The active mask matching ``x``'s leading dims, or None (count every position)."""
    lead = tuple(x.shape[:-1])
    for mask in _MASKS.get():
        if tuple(mask.shape) == lead:
            return mask
    return None
