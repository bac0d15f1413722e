"""Histogram observer with bounded memory: a fixed number of bins over a range that grows.

Threshold calibration (Migacz 2017, "8-bit inference with TensorRT"; Bhandare et al. 2019)
needs a histogram of a tensor's values over the whole calibration set. Storing activations is
not an option, so the histogram grows instead:

- Bins live on a lattice anchored at 0: bin ``k`` is ``[k * w, (k + 1) * w)`` with the width
  ``w = 2**exponent`` a power of two. The histogram holds ``bins`` consecutive lattice bins
  starting at ``start`` and always covers the bin of 0, so 0.0 is a bin edge and one-sided
  searches (``x < 0``, ``x >= 0``, ``|x|``) split it exactly.
- A value's bin is ``floor(x / w)``: dividing by a power of two is exact in floating point, so
  binning is exact, not subject to rounding at the edges.
- When a batch falls outside the window, the window first slides (if the occupied bins plus
  the new ones fit), otherwise the width doubles ``k`` times (the smallest ``k`` that fits) and
  old bins merge in aligned groups of ``2**k``: lattice bin ``i`` goes to ``i >> k``. This is
  exact because ``floor(floor(x / w) / 2**k) == floor(x / (2**k * w))``.

So the counts are exactly those of ``numpy.histogram`` of all the data at once over the final
edges, and the final width is the smallest power of two whose lattice spans the data (and 0) in
``bins`` bins, whatever the batch order. Memory is ``bins`` int64 counts plus four scalars.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from eightbit.calibration.base import Observer, masked_values
from eightbit.calibration.config import ObserverConfig, ObserverError

log = logging.getLogger(__name__)

ThresholdSearch = Callable[[Tensor, Tensor], tuple[float, float]]
"""``search(counts, edges) -> (min_threshold, max_threshold)`` over a 0-anchored histogram."""

# Width of the first histogram when the first batch is all zeros (any later data widens it).
MIN_EXPONENT = -126
# Shifting a lattice index (|index| < bins) by this many bits gives its final value (0 or -1).
_MAX_SHIFT = 62


def fitting_shift(lo: int, hi: int, bins: int) -> int:
    """Smallest ``k >= 0`` such that lattice span ``[lo >> k, hi >> k]`` holds at most ``bins``."""
    shift = 0
    while (hi >> shift) - (lo >> shift) + 1 > bins:
        shift += 1
    return shift


def slide_window(start: int, lo: int, hi: int, bins: int) -> int:
    """Least move of the window ``[start, start + bins)`` so it contains ``[lo, hi]``."""
    if lo < start:
        return lo
    if hi >= start + bins:
        return hi - bins + 1
    return start


def first_exponent(lo: float, hi: float, bins: int) -> int:
    """An exponent no larger than the smallest one whose lattice spans ``[lo, hi]`` in ``bins``."""
    spread = hi - lo
    if spread <= 0.0:
        return MIN_EXPONENT
    return max(MIN_EXPONENT, math.floor(math.log2(spread)) - math.floor(math.log2(bins)) - 2)


class HistogramObserver(Observer):
    """Histogram of every observed value; the range comes from a threshold ``search``.

    ``search(counts, edges)`` (see :mod:`eightbit.calibration.kl`, ``percentile``, ``mse``)
    returns ``(min, max)`` thresholds; the result is clipped to the observed extremes. Without a
    search the range is the observed ``[min, max]``.
    """

    def __init__(
        self, config: ObserverConfig | None = None, search: ThresholdSearch | None = None
    ) -> None:
        super().__init__(config)
        if self.axis is not None:
            raise ObserverError(f"a histogram is per tensor; got axis={self.axis}")
        self.search = search
        self.register_buffer("counts", torch.zeros(self.config.bins, dtype=torch.int64))
        self.register_buffer("start", torch.zeros((), dtype=torch.int64))
        self.register_buffer("exponent", torch.tensor(MIN_EXPONENT, dtype=torch.int64))
        self.register_buffer("min_val", torch.tensor(torch.inf))
        self.register_buffer("max_val", torch.tensor(-torch.inf))
        self._cached: tuple[Tensor, Tensor] | None = None

    @property
    def bins(self) -> int:
        return self.counts.numel()

    @property
    def width(self) -> float:
        return math.ldexp(1.0, int(self.exponent))

    def edges(self) -> Tensor:
        """Bin edges, float64 of shape ``(bins + 1,)``; 0.0 is one of them."""
        lattice = torch.arange(self.bins + 1, dtype=torch.float64) + int(self.start)
        return lattice * self.width

    def observe(self, x: Tensor, mask: Tensor | None) -> None:
        values = masked_values(x, mask)  # (n,) float64
        if values.numel() == 0:
            return
        self._cached = None
        vmin, vmax = values.min(), values.max()
        self.min_val = torch.minimum(self.min_val, vmin.float())
        self.max_val = torch.maximum(self.max_val, vmax.float())
        lo, hi = min(float(vmin), 0.0), max(float(vmax), 0.0)
        if int(self.counts.sum()) == 0:
            self.exponent.fill_(first_exponent(lo, hi, self.bins))
            self.start.fill_(0)
        self._cover(math.floor(lo / self.width), math.floor(hi / self.width))
        lattice = torch.floor(values / self.width).long() - int(self.start)
        self.counts += torch.bincount(lattice, minlength=self.bins)

    def _cover(self, lo: int, hi: int) -> None:
        """Slide and/or widen the window so lattice bins ``[lo, hi]`` (current width) fit."""
        occupied = torch.nonzero(self.counts).flatten()
        if occupied.numel():
            lo = min(lo, int(self.start) + int(occupied[0]))
            hi = max(hi, int(self.start) + int(occupied[-1]))
        shift = fitting_shift(lo, hi, self.bins)
        start = slide_window(int(self.start) >> shift, lo >> shift, hi >> shift, self.bins)
        if shift:
            old = torch.arange(self.bins, dtype=torch.int64) + int(self.start)
            target = (old >> min(shift, _MAX_SHIFT)) - start
            merged = torch.zeros_like(self.counts)
            self.counts = merged.index_add_(0, target[occupied], self.counts[occupied])
            self.exponent += shift
            log.debug("histogram widened 2**%d times to bin width 2**%d", shift, int(self.exponent))
        elif start != int(self.start):
            self.counts = torch.roll(self.counts, int(self.start) - start)
        self.start.fill_(start)

    def _range(self) -> tuple[Tensor, Tensor]:
        if self._cached is None:
            if not bool(self.min_val <= self.max_val):
                raise self._no_data()
            lo, hi = self.min_val.clone(), self.max_val.clone()
            if self.search is not None:
                t_lo, t_hi = self.search(self.counts, self.edges())
                # Never beyond the observed extremes; + 0.0 turns -0.0 into 0.0.
                lo = torch.tensor(max(t_lo, min(float(lo), 0.0)) + 0.0, dtype=torch.float32)
                hi = torch.tensor(min(t_hi, max(float(hi), 0.0)) + 0.0, dtype=torch.float32)
                log.debug(
                    "thresholds [%g, %g] of observed [%g, %g]",
                    float(lo),
                    float(hi),
                    float(self.min_val),
                    float(self.max_val),
                )
            self._cached = (lo, hi)
        return self._cached[0].clone(), self._cached[1].clone()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bins={self.bins}, width=2**{int(self.exponent)}"

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._cached = None
        super()._load_from_state_dict(*args, **kwargs)
