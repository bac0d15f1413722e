"""Percentile thresholds: clip the rarest values (compared with max, KL and MSE calibration by
Wu et al. 2020, "Integer Quantization for Deep Learning Inference: Principles and Empirical
Evaluation", arXiv 2004.09602).

Two-sided: the range is ``[q(1 - p), q(p)]`` of the values; symmetric: ``(-t, t)`` with ``t`` the
``p``-quantile of ``|x|``. Quantiles are read from the histogram, interpolating linearly inside
the bin where the cumulative count reaches the target (values assumed uniform within a bin).
"""

from __future__ import annotations

import torch
from torch import Tensor

from eightbit.calibration.sides import split_at_zero


def _position(hist: Tensor, count: float) -> float:
    """Fractional bin position (from 0) where the cumulative count of ``hist`` reaches ``count``."""
    if count <= 0 or hist.numel() == 0:
        return 0.0
    cdf = torch.cumsum(hist, 0)
    b = min(int(torch.searchsorted(cdf, torch.tensor([count], dtype=cdf.dtype))), hist.numel() - 1)
    before = float(cdf[b] - hist[b])
    fraction = (count - before) / float(hist[b])
    return b + min(max(fraction, 0.0), 1.0)


def percentile_range(
    counts: Tensor, edges: Tensor, percentile: float, symmetric: bool = False
) -> tuple[float, float]:
    """Thresholds clipping ``100 - percentile`` % of the values at each end (two-sided: the
    ``(100 - p)``-th and ``p``-th percentiles of x) or of ``|x|`` (symmetric: ``(-t, t)``)."""
    split = split_at_zero(counts, edges)
    clipped = split.total * (1.0 - percentile / 100.0)  # values to leave outside, per tail
    if symmetric:
        magnitude = split.magnitude()
        t = _position(magnitude, float(magnitude.sum()) - clipped) * split.width
        return -t, t
    lo = _position(split.negative, float(split.negative.sum()) - clipped)
    hi = _position(split.positive, float(split.positive.sum()) - clipped)
    return -lo * split.width, hi * split.width
