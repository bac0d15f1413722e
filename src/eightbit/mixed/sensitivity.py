"""Per-layer sensitivity: which INT8 layers cost task accuracy, measured three ways.

For every quantized unit (:mod:`eightbit.mixed.units`):

- ``sqnr_db``: SQNR of the INT8 module's output against the FP32 module's on the FP32 model's
  own inputs (calibration data), :mod:`eightbit.mixed.layer_error`;
- ``only_int8_delta``: task metric with only this unit INT8 (everything else FP32) minus FP32;
- ``only_fp32_delta``: task metric with only this unit FP32 (everything else INT8) minus INT8.

``harm = only_fp32_delta - only_int8_delta``: what leaving the layer in FP32 recovers plus what
quantizing it alone costs, both in metric points. Layers are ranked by harm (ties: lower SQNR
first). The task enters as ``metric(model) -> float`` (higher is better: BLEU, accuracy).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from eightbit.mixed.layer_error import OutputErrorMeter
from eightbit.mixed.units import Unit, feed_forward_unchained, swapped
from eightbit.progress import progress as progress_bar

Metric = Callable[[nn.Module], float]
RunFn = Callable[[nn.Module, Any], object]


@dataclass(frozen=True)
class LayerSensitivity:
    """The measurements of one unit (metric deltas in metric points, SQNR in dB)."""

    name: str
    kind: str
    sqnr_db: float
    only_int8_delta: float | None = None
    only_fp32_delta: float | None = None

    @property
    def harm(self) -> float:
        return (self.only_fp32_delta or 0.0) - (self.only_int8_delta or 0.0)


def unit_sqnr(
    fp32: nn.Module,
    int8: nn.Module,
    units: Sequence[Unit],
    batches: Iterable[Any],
    run: RunFn,
    progress: bool = True,
) -> dict[str, float]:
    """SQNR (dB) of each unit's INT8 module against its FP32 module, on ``batches`` (feed-forward
    chains undone meanwhile: a chained ``fc1`` outputs ReLU'd values)."""
    alternatives = {n: {"int8": int8.get_submodule(n)} for u in units for n in u.names}
    with (
        torch.no_grad(),
        feed_forward_unchained(int8),
        OutputErrorMeter(fp32, alternatives) as meter,
    ):
        for batch in progress_bar(batches, "layer SQNR", "batch", progress):
            run(fp32, batch)
    return meter.pooled_sqnr({u.name: u.names for u in units}, "int8")


def one_layer_switched(
    base: nn.Module,
    other: nn.Module,
    units: Sequence[Unit],
    metric: Metric,
    base_metric: float,
    progress: bool = True,
) -> dict[str, float]:
    """Metric change when each unit alone comes from ``other`` (the rest from ``base``).

    ``base`` the INT8 model and ``other`` the FP32 one: the BLEU each layer recovers when left
    FP32 alone. The other way round: what each layer costs when it alone is INT8.
    """
    deltas = {}
    for unit in progress_bar(units, "one layer switched", "layer", progress):
        with swapped(base, [unit], other):
            deltas[unit.name] = round(metric(base) - base_metric, 4)
    return deltas


def ranked(layers: Iterable[LayerSensitivity]) -> list[LayerSensitivity]:
    """Most harmful first; ties: lower SQNR first, then name (deterministic)."""
    return sorted(layers, key=lambda s: (-s.harm, _finite(s.sqnr_db), s.name))


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.copysign(1e9, value)
