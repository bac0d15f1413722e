"""Views of a 0-anchored histogram as one-sided magnitude histograms.

The threshold searches (Migacz 2017; Bhandare et al. 2019) work on one side at a time: the values
``>= 0``, the values ``< 0`` mirrored, or ``|x|``. A histogram whose bins are uniform and have
0.0 as an edge (as :class:`~eightbit.calibration.histogram.HistogramObserver` guarantees) splits
exactly. Each side is returned nearest-to-zero first, trailing empty bins dropped, so the last
bin holds the side's largest value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from eightbit.calibration.config import ObserverError

_EDGE_TOLERANCE = 1e-6  # relative to the bin width


def trim(hist: Tensor) -> Tensor:
    """``hist`` without its trailing empty bins."""
    nonzero = torch.nonzero(hist).flatten()
    return hist[: int(nonzero[-1]) + 1] if nonzero.numel() else hist[:0]


@dataclass(frozen=True)
class SplitHistogram:
    """Counts on each side of 0 (float64, nearest-to-zero first) and the common bin width.

    ``positive[k]`` counts values in ``[k * width, (k + 1) * width)``; ``negative[k]`` counts
    values in ``[-(k + 1) * width, -k * width)``.
    """

    negative: Tensor
    positive: Tensor
    width: float

    @property
    def total(self) -> float:
        return float(self.negative.sum() + self.positive.sum())

    def magnitude(self) -> Tensor:
        """Counts of ``|x|``: bin ``k`` covers ``[k * width, (k + 1) * width]``."""
        size = max(self.negative.numel(), self.positive.numel())
        hist = torch.zeros(size, dtype=torch.float64)
        hist[: self.negative.numel()] += self.negative
        hist[: self.positive.numel()] += self.positive
        return hist


def split_at_zero(counts: Tensor, edges: Tensor) -> SplitHistogram:
    """Split a histogram with uniform ``edges`` at 0.0, which must be an edge or a point of the
    edges' lattice (a range not reaching 0 is padded with empty bins)."""
    counts = counts.detach().double().flatten()
    edges = edges.detach().double().flatten()
    if edges.numel() != counts.numel() + 1 or counts.numel() == 0:
        raise ObserverError(
            f"expected bins+1 edges for {counts.numel()} bins, got {edges.numel()} edges"
        )
    if bool((counts < 0).any()):
        raise ObserverError("histogram counts must be non-negative")
    width = float(edges[-1] - edges[0]) / counts.numel()
    zero = -float(edges[0]) / width if width > 0 else 0.5  # index of the edge at 0.0
    uniform = width > 0 and float((edges.diff() - width).abs().max()) <= _EDGE_TOLERANCE * width
    if not uniform or abs(zero - round(zero)) > _EDGE_TOLERANCE:
        raise ObserverError(
            f"histogram edges [{float(edges[0])}, {float(edges[-1])}] must be uniform with 0.0 "
            "on their lattice"
        )
    zero = round(zero)
    below = torch.zeros(max(-zero, 0), dtype=torch.float64)  # empty bins between 0 and edges[0]
    above = torch.zeros(max(zero - counts.numel(), 0), dtype=torch.float64)
    padded = torch.cat([below, counts, above])
    zero = max(zero, 0)
    return SplitHistogram(
        negative=trim(padded[:zero].flip(0)), positive=trim(padded[zero:]), width=width
    )
