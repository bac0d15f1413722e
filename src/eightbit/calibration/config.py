"""Observer configuration: one frozen dataclass, one name per option (API, CLI, saved metadata).

The method names are a contract: the CLI accepts them, saved models record them and reports
print them. ``minmax`` and ``ema`` track ranges directly (Jacob et al. 2018; Q8BERT, Zafrir et al.
2019); the others search a saturation threshold in a histogram: KL divergence in the three modes of
Bhandare et al. 2019 (after Migacz 2017, "8-bit inference with TensorRT"), a percentile, or the
least expected squared quantization error.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from eightbit.core.qparams import qrange
from eightbit.errors import EightbitError

CALIBRATION_METHODS: tuple[str, ...] = (
    "minmax",
    "ema",
    "kl-symmetric",
    "kl-independent",
    "kl-conjugate",
    "percentile",
    "mse",
)

# Methods that learn one range per channel; the histogram methods are per tensor.
PER_CHANNEL_METHODS: tuple[str, ...] = ("minmax", "ema")

MIN_BINS = 16


class ObserverError(EightbitError):
    """An observer was misconfigured or fed data it cannot use (NaN/Inf, no data at all)."""


@dataclass(frozen=True)
class ObserverConfig:
    """How to turn observed activations into a quantization range.

    ``method``: one of :data:`CALIBRATION_METHODS`. ``dtype``/``symmetric``/``narrow``/
    ``reduce_range`` describe the integer grid the range is mapped onto (see
    :func:`eightbit.core.qparams.qparams_from_range`); the threshold searches use its number of
    steps. ``axis``: per-channel ranges along this axis (``minmax`` and ``ema`` only).
    ``ema_decay``: weight of the old value in the moving average. ``bins``: histogram size (the
    memory of a histogram observer, whatever the amount of data). ``percentile``: in (50, 100],
    the share of values kept inside the range by the ``percentile`` method.
    """

    method: str = "minmax"
    dtype: torch.dtype = torch.uint8
    symmetric: bool = False
    narrow: bool = False
    reduce_range: bool = False
    axis: int | None = None
    ema_decay: float = 0.9
    bins: int = 2048
    percentile: float = 99.99

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise ObserverError(
                f"unknown calibration method {self.method!r}; expected one of "
                f"{', '.join(CALIBRATION_METHODS)}"
            )
        if self.dtype not in (torch.uint8, torch.int8):
            raise ObserverError(f"dtype must be torch.uint8 or torch.int8, not {self.dtype}")
        if self.axis is not None and self.method not in PER_CHANNEL_METHODS:
            raise ObserverError(
                f"method {self.method!r} is per tensor; per-channel (axis={self.axis}) needs one "
                f"of {', '.join(PER_CHANNEL_METHODS)}"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ObserverError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.bins < MIN_BINS:
            raise ObserverError(f"bins must be at least {MIN_BINS}, got {self.bins}")
        if not 50.0 < self.percentile <= 100.0:
            raise ObserverError(f"percentile must be in (50, 100], got {self.percentile}")

    @property
    def steps(self) -> int:
        """Number of quantization steps ``qmax - qmin`` of the target grid (255 for uint8)."""
        qmin, qmax = qrange(self.dtype, narrow=self.narrow)
        if self.reduce_range:
            qmin, qmax = qmin // 2, qmax // 2
        return qmax - qmin
