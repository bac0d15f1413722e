"""Thresholds minimizing the expected squared quantization error (rounding plus clipping).

A classic alternative to KL calibration (Banner et al. 2019, "Post training 4-bit quantization of
convolutional networks for rapid-deployment", minimize the same quantity analytically; Wu et al.
2020, arXiv 2004.09602, compare it with max, KL and percentile calibration).

For a candidate range ``[-t_neg, t_pos]`` on a grid of ``steps`` steps the error estimated from
the histogram is

    inside * s**2 / 12  +  sum over clipped values of (|x| - t)**2,     s = (t_neg + t_pos) / steps

the first term being the uniform rounding-noise model for values inside the range, the second
the clipping error with values uniform within their bin (exact for that model: a bin ``d`` bins
beyond the threshold contributes ``count * width**2 * (d**2 + d + 1/3)``). Candidates are all the
bin edges of each side (symmetric: of ``|x|``, with ``s = t / (steps / 2)``); the two-sided search
evaluates every pair, at most (bins / 2 + 1)**2 entries.
"""

from __future__ import annotations

import torch
from torch import Tensor

from eightbit.calibration.sides import split_at_zero

_F64 = torch.float64


def _tail(values: Tensor) -> Tensor:
    """``out[k] = sum(values[k + 1:])``."""
    rev = torch.flip(torch.cumsum(torch.flip(values, [0]), 0), [0])
    return torch.cat([rev[1:], torch.zeros(1, dtype=_F64)])


def clip_costs(hist: Tensor) -> tuple[Tensor, Tensor]:
    """For a threshold after ``k`` bins, ``k = 0..n``: the number of clipped values and their
    squared clipping error in units of ``width**2`` (values uniform within a bin).

    Built from suffix sums of non-negative terms only (no cancellation):
    ``A[k] = sum_{b >= k} c_b``, ``D[k] = sum_{b > k} c_b (b - k) = sum_{j > k} A[j]``,
    ``C[k] = A[k] / 3 + sum_{j > k} (2 D[j] + 2 A[j])``.
    """
    counts = torch.cat([hist.to(_F64), torch.zeros(1, dtype=_F64)])  # (n + 1,)
    outside = counts + _tail(counts)
    beyond = _tail(outside)
    cost = outside / 3 + _tail(2 * beyond + 2 * outside)
    return outside, cost


def mse_range(
    counts: Tensor, edges: Tensor, steps: int, symmetric: bool = False
) -> tuple[float, float]:
    """Thresholds minimizing the estimated squared quantization error (see module docstring)."""
    split = split_at_zero(counts, edges)
    total = split.total
    if total <= 0:
        return 0.0, 0.0
    if symmetric:
        outside, cost = clip_costs(split.magnitude())
        k = torch.arange(outside.numel(), dtype=_F64)
        error = (total - outside) * (k / (steps / 2)) ** 2 / 12 + cost
        error[0] = torch.inf  # a zero range
        t = int(torch.argmin(error)) * split.width
        return -t, t
    out_neg, cost_neg = clip_costs(split.negative)  # (n_neg + 1,)
    out_pos, cost_pos = clip_costs(split.positive)  # (n_pos + 1,)
    k_neg = torch.arange(out_neg.numel(), dtype=_F64)[:, None]
    k_pos = torch.arange(out_pos.numel(), dtype=_F64)[None, :]
    inside = total - out_neg[:, None] - out_pos[None, :]
    error = inside * ((k_neg + k_pos) / steps) ** 2 / 12 + cost_neg[:, None] + cost_pos[None, :]
    error[0, 0] = torch.inf
    best = int(torch.argmin(error))
    k_lo, k_hi = divmod(best, out_pos.numel())
    return -k_lo * split.width, k_hi * split.width
