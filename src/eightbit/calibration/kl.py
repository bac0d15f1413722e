"""Saturation thresholds by KL divergence: the TensorRT calibration (Migacz 2017, "8-bit
inference with TensorRT"), in the three modes of Bhandare et al. 2019 (arXiv 1906.00532).

For one side of the histogram (magnitudes, ``n`` bins from 0 outward) and ``L`` quantization
levels, every candidate threshold keeps the first ``i`` bins, ``L <= i <= n``:

- ``P``: the first ``i`` bins, with the counts of all bins beyond (the outliers) folded into bin
  ``i - 1``.
- ``Q``: the same ``i`` bins *before* folding, merged into ``L`` groups of nearly equal size
  (group ``j`` is bins ``[j * i // L, (j + 1) * i // L)``), each group's sum spread evenly over
  the bins of the group where ``P`` is nonzero (0 elsewhere). Building ``Q`` from the unfolded
  bins is Migacz's pseudo-code (and MXNet's / TVM's); quantizing the folded ``P`` instead would
  make ``Q == P`` at ``i == L`` and the search would always pick the smallest threshold. MXNet
  merges ``i // L`` bins per group and gives the remainder to the last group, which can make
  the last group up to ``L - 1`` bins wider than the others; equal groups avoid that artifact.
- ``KL(P || Q) = sum_b p_b log(p_b / q_b)`` over normalized ``P`` and ``Q`` and the bins where
  ``p_b > 0``; it is ``+inf`` where ``q_b = 0 < p_b`` (no smoothing, like NVIDIA
  pytorch-quantization's entropy calibrator; MXNet and TVM add an ``eps`` instead). ``i == n``
  never clips and is always finite, so a finite minimum exists. Ties go to the smaller threshold.

A consequence worth knowing: a threshold whose last group holds no data scores ``+inf``, so the
search never clips inside an empty stretch of the histogram. When the bulk of a tensor fits in
fewer than ``L`` bins and a few isolated outliers set the range, no candidate between the bulk and
the outliers is finite and KL keeps the outliers (as min/max does); more ``bins``, or the
``percentile`` / ``mse`` methods, handle that case.

Every candidate is evaluated, no striding: with prefix sums of ``c``, ``[c != 0]`` and
``c log c`` a candidate costs O(L), so one search is an ``(n - L + 1, L)`` array (2048 bins x
127 levels: about 0.3 M entries, a few milliseconds), computed in blocks of
:data:`BLOCK_ENTRIES` entries so memory stays bounded for any number of bins.

Modes (``steps`` = quantization steps of the grid, 255 for uint8):

- ``kl-symmetric``: search ``|x|`` with ``steps // 2`` levels; range ``(-t, t)``.
- ``kl-independent``: search the negative side and the positive side separately; the two sides
  share the ``steps`` levels in proportion to their thresholds, as an affine grid does
  (``levels_pos = round(steps * t_pos / (t_pos - t_neg))``, at least 1 per non-empty side). The
  share starts from the observed extents and is re-derived from the found thresholds until it
  repeats (at most :data:`INDEPENDENT_ROUNDS` rounds). KL thresholds jump with the number of
  levels, so this can cycle instead of converging; the result is then the tried share with the
  least divergence of the whole histogram (each side's KL weighted by its share of the values).
  A fixed point, when reached, always wins. Deterministic. A side without values gets threshold
  0 and the other side all ``steps`` levels (e.g. after a ReLU).
- ``kl-conjugate``: search each side with ``steps // 2`` levels (the share of one side of a
  symmetric grid), then use ``t = max(|t_neg|, t_pos)`` symmetrically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from eightbit.calibration.sides import SplitHistogram, split_at_zero

INDEPENDENT_ROUNDS = 8
# Entries per (candidates, levels) block (float64: 8 MB), whatever the number of bins.
BLOCK_ENTRIES = 1 << 20

_F64 = torch.float64


def _prefix(values: Tensor) -> Tensor:
    """``[0, v0, v0 + v1, ...]``: sums over ``values[:k]`` for k = 0..n."""
    return torch.cat([torch.zeros(1, dtype=_F64), torch.cumsum(values.to(_F64), 0)])


def _xlogx(x: Tensor) -> Tensor:
    return torch.where(x > 0, x * torch.log(torch.where(x > 0, x, 1.0)), 0.0)


@dataclass(frozen=True)
class _Prefixes:
    """Sums over the first ``k`` bins, ``k = 0..n``, of the counts, ``[c != 0]`` and ``c log c``."""

    counts: Tensor
    total: float
    sums: Tensor
    nonzeros: Tensor
    xlogxs: Tensor

    @classmethod
    def of(cls, hist: Tensor) -> _Prefixes:
        counts = hist.to(_F64)
        total = float(counts.sum())
        return cls(counts, total, _prefix(counts), _prefix(counts != 0), _prefix(_xlogx(counts)))


def _kl_block(pre: _Prefixes, kept: Tensor, levels: int) -> Tensor:
    """``KL(P || Q)`` for the candidates ``kept`` (numbers of kept bins, ``(K,)``)."""
    group = torch.arange(levels)  # (L,)
    start = group * kept[:, None] // levels  # (K, L) first bin of each group
    stop = (group + 1) * kept[:, None] // levels  # (K, L) one past its last bin
    q_mass = pre.sums[stop] - pre.sums[start]  # (K, L) group sums before folding
    support = pre.nonzeros[stop] - pre.nonzeros[start]  # (K, L) nonzero bins of P per group
    outliers = pre.total - pre.sums[kept]  # (K,)
    last = pre.counts[kept - 1]  # (K,)
    support[:, -1] += ((last == 0) & (outliers > 0)).to(_F64)
    p_mass = q_mass.clone()
    p_mass[:, -1] += outliers
    p_log_p = pre.xlogxs[kept - 1] + _xlogx(last + outliers)  # sum_b P_b log P_b, (K,)
    q_total = pre.sums[kept]  # (K,) Q normalizer
    log_q = torch.log(q_mass) - torch.log(support) - torch.log(q_total)[:, None]
    cross = torch.where(p_mass > 0, p_mass * log_q, 0.0).sum(1)  # sum_b P_b log q_b
    kl = (p_log_p - cross) / pre.total - math.log(pre.total)
    return torch.where(q_total > 0, kl, torch.inf)


def kl_divergences(hist: Tensor, levels: int) -> Tensor:
    """``KL(P || Q)`` for every candidate ``i = levels .. n`` kept bins of a one-sided ``hist``.

    Returns a float64 tensor of shape ``(n - levels + 1,)`` (empty if ``n < levels``).
    """
    if levels < 1:
        raise ValueError(f"levels must be positive, got {levels}")
    pre = _Prefixes.of(hist)
    kept = torch.arange(levels, hist.numel() + 1)  # (K,) candidate numbers of kept bins
    if kept.numel() == 0 or pre.total <= 0:
        return torch.zeros(kept.numel(), dtype=_F64)
    blocks = kept.split(max(1, BLOCK_ENTRIES // levels))  # bounded memory for any bins
    return torch.cat([_kl_block(pre, block, levels) for block in blocks])


def kl_search(hist: Tensor, levels: int) -> tuple[int, float]:
    """Least-divergence threshold of a one-sided ``hist``: ``(bins kept from 0, KL there)``."""
    n = hist.numel()
    if n <= levels:
        return n, 0.0  # the grid is already finer than the histogram: nothing to clip
    divergences = kl_divergences(hist, levels)
    best = int(torch.argmin(divergences))
    return levels + best, float(divergences[best])


def kl_threshold_bins(hist: Tensor, levels: int) -> int:
    """Number of bins (from 0) kept by the least-divergence threshold of a one-sided ``hist``."""
    return kl_search(hist, levels)[0]


def kl_symmetric_range(counts: Tensor, edges: Tensor, steps: int) -> tuple[float, float]:
    """``kl-symmetric``: threshold ``t`` of ``|x|`` with ``steps // 2`` levels; ``(-t, t)``."""
    split = split_at_zero(counts, edges)
    t = kl_threshold_bins(split.magnitude(), steps // 2) * split.width
    return -t, t


def kl_conjugate_range(counts: Tensor, edges: Tensor, steps: int) -> tuple[float, float]:
    """``kl-conjugate``: each side with ``steps // 2`` levels, then ``max(|t_min|, t_max)``."""
    split = split_at_zero(counts, edges)
    half = steps // 2
    bins = max(kl_threshold_bins(split.negative, half), kl_threshold_bins(split.positive, half))
    return -bins * split.width, bins * split.width


def _positive_share(steps: int, neg_bins: int, pos_bins: int) -> int:
    """Levels of the positive side of an affine grid spanning ``[-neg_bins, pos_bins]``."""
    share = round(steps * pos_bins / (neg_bins + pos_bins))
    return min(max(share, 1), steps - 1)


def _independent_bins(split: SplitHistogram, steps: int) -> tuple[int, int]:
    neg, pos = split.negative, split.positive
    if neg.numel() == 0 or pos.numel() == 0:  # one-sided data: all levels to the other side
        return kl_threshold_bins(neg, steps), kl_threshold_bins(pos, steps)
    weight_neg = float(neg.sum()) / split.total
    tried: dict[int, tuple[bool, float, int, int]] = {}  # share -> (inconsistent, KL, t_neg, t_pos)
    share = _positive_share(steps, neg.numel(), pos.numel())
    while share not in tried and len(tried) < INDEPENDENT_ROUNDS:
        t_neg, kl_neg = kl_search(neg, steps - share)
        t_pos, kl_pos = kl_search(pos, share)
        derived = _positive_share(steps, t_neg, t_pos)
        divergence = weight_neg * kl_neg + (1.0 - weight_neg) * kl_pos
        tried[share] = (derived != share, divergence, t_neg, t_pos)
        share = derived
    _, _, t_neg, t_pos = min(tried.values())  # a fixed point, else the least divergence
    return t_neg, t_pos


def kl_independent_range(counts: Tensor, edges: Tensor, steps: int) -> tuple[float, float]:
    """``kl-independent``: min and max thresholds searched separately (levels shared, see above)."""
    split = split_at_zero(counts, edges)
    t_neg, t_pos = _independent_bins(split, steps)
    return -t_neg * split.width, t_pos * split.width
