"""Thresholds minimizing the expected squared quantization error (rounding plus clipping).

A classic alternative to KL calibration (Banner et al. 2019, "Post training 4-bit quantization of
convolutional networks for rapid-deployment", minimize the same quantity analytically; Wu et al.
2020, arXiv 2004.09602, compare it with max, KL and percentile calibration).

The error is estimated from the histogram with values uniform within each bin, and is exact for
that model. For a candidate range ``[-t_neg, t_pos]`` on a grid of ``steps`` steps the grid
points are the multiples of ``s = (t_neg + t_pos) / steps`` (0.0 is exact), so

- a value inside the range costs its rounding error ``(x - s * round(x / s))**2``, averaged over
  its bin in closed form (the integral of the squared sawtooth, :func:`_sawtooth_integral`);
  this stays right when the step is wider than the whole distribution, where the usual
  ``s**2 / 12`` noise model overestimates the error of a min/max range many times over;
- a clipped value costs ``(|x| - t)**2``: a bin ``d`` bins beyond the threshold contributes
  ``count * width**2 * (d**2 + d + 1/3)``.

Candidates are every bin edge of each side (symmetric: of ``|x|``, with ``s = t / (steps / 2)``).
The two-sided search scores every pair ``(k_neg, k_pos)``: for each range width ``m = k_neg +
k_pos`` (in bins) one row of rounding costs per side, so the work is O(bins**2), done in blocks
of :data:`BLOCK_ENTRIES` entries (bounded memory); ties go to the narrower range.
"""

from __future__ import annotations

import torch
from torch import Tensor

from eightbit.calibration.sides import split_at_zero

_F64 = torch.float64
# Entries per block of the candidate searches (float64: 8 MB), whatever the number of bins.
BLOCK_ENTRIES = 1 << 20


def _tail(values: Tensor) -> Tensor:
    """``out[k] = sum(values[k + 1:])`` along the last dim."""
    rev = torch.flip(torch.cumsum(torch.flip(values, [-1]), -1), [-1])
    return torch.cat([rev[..., 1:], torch.zeros_like(rev[..., :1])], -1)


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


def _sawtooth_integral(u: Tensor) -> Tensor:
    """``integral_0^u (v - round(v))**2 dv`` for ``u >= 0``."""
    y = u + 0.5
    f = y - torch.floor(y)
    return torch.floor(y) / 12 + ((f - 0.5) ** 3 + 0.125) / 3 - 1 / 24


def rounding_costs(hist: Tensor, bins_per_step: Tensor) -> Tensor:
    """``out[m, k]``: squared rounding error of the values in the first ``k`` bins (units of
    ``width**2``) on a grid of step ``width * bins_per_step[m]`` (values uniform within a bin).

    Shape ``(len(bins_per_step), n + 1)``.
    """
    step = bins_per_step.to(_F64)[:, None]  # (M, 1), in bins
    edges = torch.arange(hist.numel() + 1, dtype=_F64)[None, :]  # (1, n + 1)
    integral = _sawtooth_integral(edges / step) * step**3  # (M, n + 1)
    per_bin = (integral[:, 1:] - integral[:, :-1]) * hist.to(_F64)  # (M, n)
    return torch.cat([torch.zeros(step.shape[0], 1, dtype=_F64), torch.cumsum(per_bin, 1)], 1)


def _rows(width: int) -> int:
    """Rows per block so that a ``(rows, width)`` float64 block stays near 8 MB."""
    return max(1, BLOCK_ENTRIES // max(width, 1))


def _symmetric_bins(magnitude: Tensor, steps: int) -> int:
    outside, clip = clip_costs(magnitude)
    candidates = torch.arange(outside.numel())  # threshold after k bins, (n + 1,)
    errors = []
    for k in candidates.split(_rows(outside.numel())):  # (C,)
        inside = rounding_costs(magnitude, k * (2.0 / steps))  # (C, n + 1)
        errors.append(inside.gather(1, k[:, None]).squeeze(1) + clip[k])
    error = torch.cat(errors)
    error[0] = torch.inf  # a zero range
    return int(torch.argmin(error))


def _two_sided_bins(negative: Tensor, positive: Tensor, steps: int) -> tuple[int, int]:
    _, clip_neg = clip_costs(negative)  # (n_neg + 1,)
    _, clip_pos = clip_costs(positive)  # (n_pos + 1,)
    n_pos = positive.numel()
    k_neg = torch.arange(clip_neg.numel())[None, :]  # (1, n_neg + 1)
    best = (torch.inf, 0, 0)
    spans = torch.arange(1, clip_neg.numel() + n_pos)  # range width in bins, (S,)
    for span in spans.split(_rows(clip_neg.numel() + clip_pos.numel())):  # (C,)
        k_pos = span[:, None] - k_neg  # (C, n_neg + 1)
        valid = (k_pos >= 0) & (k_pos <= n_pos)
        k_pos = k_pos.clamp(0, n_pos)
        inside_neg = rounding_costs(negative, span / steps)  # (C, n_neg + 1)
        inside_pos = rounding_costs(positive, span / steps).gather(1, k_pos)  # (C, n_neg + 1)
        error = inside_neg + inside_pos + clip_neg[None, :] + clip_pos[k_pos]
        error = torch.where(valid, error, torch.inf)
        flat = int(torch.argmin(error))
        if float(error.flatten()[flat]) < best[0]:  # ties: the narrower range
            row, col = divmod(flat, error.shape[1])
            best = (float(error[row, col]), col, int(k_pos[row, col]))
    return best[1], best[2]


def mse_range(
    counts: Tensor, edges: Tensor, steps: int, symmetric: bool = False
) -> tuple[float, float]:
    """Thresholds minimizing the estimated squared quantization error (see module docstring)."""
    split = split_at_zero(counts, edges)
    if split.total <= 0:
        return 0.0, 0.0
    if symmetric:
        t = _symmetric_bins(split.magnitude(), steps) * split.width
        return -t, t
    k_neg, k_pos = _two_sided_bins(split.negative, split.positive, steps)
    return -k_neg * split.width, k_pos * split.width
