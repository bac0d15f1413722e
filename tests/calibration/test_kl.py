"""KL threshold search (TensorRT method) against a slow, textbook implementation."""

import math

import numpy as np
import pytest
import torch

from eightbit.calibration.kl import (
    kl_conjugate_range,
    kl_divergences,
    kl_independent_range,
    kl_symmetric_range,
    kl_threshold_bins,
)


def textbook_kl(hist, levels):
    """Plain loop over candidates, straight from Migacz 2017 (equal groups, no smoothing)."""
    hist = [float(c) for c in hist]
    total = sum(hist)
    divergences = []
    for i in range(levels, len(hist) + 1):
        p = hist[:i]
        p[i - 1] += sum(hist[i:])  # outliers folded into the edge bin
        q = [0.0] * i
        for j in range(levels):  # quantize the unfolded bins into `levels` groups
            lo, hi = j * i // levels, (j + 1) * i // levels
            support = [b for b in range(lo, hi) if p[b] != 0]
            for b in support:  # expand back over P's nonzero bins
                q[b] = sum(hist[lo:hi]) / len(support)
        q_total = sum(q)
        kl = 0.0
        for pb, qb in zip(p, q, strict=True):
            if pb > 0:
                kl = (
                    math.inf
                    if qb == 0 or q_total == 0
                    else kl + pb / total * math.log((pb / total) / (qb / q_total))
                )
        divergences.append(kl)
    return divergences


def random_histogram(rng, n):
    """Bumpy, sparse-ish counts with a long tail and isolated outliers."""
    x = np.abs(rng.standard_t(df=rng.uniform(1.5, 6), size=rng.integers(200, 5000)))
    counts, _ = np.histogram(x, bins=n, range=(0, np.quantile(x, rng.uniform(0.9, 1.0))))
    counts[-1] += rng.integers(0, 4)
    return torch.tensor(counts, dtype=torch.int64)


@pytest.mark.parametrize("seed", range(8))
def test_vectorized_search_equals_the_textbook_loop(seed):
    rng = np.random.default_rng(seed)
    levels = int(rng.choice([3, 8, 31]))
    hist = random_histogram(rng, int(rng.integers(levels + 5, 160)))
    expected = np.array(textbook_kl(hist.tolist(), levels))
    got = kl_divergences(hist, levels).numpy()
    assert np.array_equal(np.isinf(got), np.isinf(expected))
    finite = np.isfinite(expected)
    assert np.allclose(got[finite], expected[finite], rtol=1e-9, atol=1e-12)
    best = kl_threshold_bins(hist, levels) - levels
    assert expected[best] <= expected[finite].min() + 1e-12  # same minimum (ties: first)
    assert best == int(np.argmin(expected)) or expected[best] == pytest.approx(expected.min())


def test_kl_is_infinite_only_when_q_misses_mass_of_p():
    hist = torch.tensor([5, 3, 0, 0, 0, 0, 0, 2])  # an outlier far from the body
    kl = kl_divergences(hist, 2)  # candidates keep 2..8 bins
    assert math.isinf(float(kl[6 - 2]))  # keep 6: the outlier folds into an empty group
    assert math.isfinite(float(kl[3 - 2]))  # keep 3: its group [1, 3) holds data
    assert math.isfinite(float(kl[-1]))  # no clipping is always finite


def zero_anchored(neg, pos, width=0.5):
    """Counts and edges of a histogram with 0 as an edge: ``neg`` nearest-to-zero first."""
    counts = torch.cat([torch.as_tensor(neg).flip(0), torch.as_tensor(pos)])
    edges = (torch.arange(counts.numel() + 1, dtype=torch.float64) - len(neg)) * width
    return counts, edges


def side(rng, n, scale):
    counts = np.histogram(np.abs(rng.laplace(size=20000)) * scale, bins=n, range=(0, n))[0]
    return torch.tensor(counts)


def test_symmetric_mode_searches_the_magnitudes_with_half_the_levels():
    rng = np.random.default_rng(0)
    neg, pos = side(rng, 300, 20), side(rng, 400, 30)
    counts, edges = zero_anchored(neg, pos)
    lo, hi = kl_symmetric_range(counts, edges, steps=255)
    magnitude = pos.clone()
    magnitude[:300] += neg
    best = int(np.argmin(textbook_kl(magnitude.tolist(), 127))) + 127
    assert (lo, hi) == (-best * 0.5, best * 0.5)


def test_conjugate_mode_is_the_larger_side_threshold_used_symmetrically():
    rng = np.random.default_rng(1)
    neg, pos = side(rng, 300, 15), side(rng, 400, 30)
    counts, edges = zero_anchored(neg, pos)
    lo, hi = kl_conjugate_range(counts, edges, steps=255)
    t_neg = kl_threshold_bins(neg, 127)
    t_pos = kl_threshold_bins(pos, 127)
    assert hi == -lo == max(t_neg, t_pos) * 0.5


@pytest.mark.parametrize("seed", [2, 5])
def test_independent_mode_splits_the_levels_between_the_sides(seed):
    rng = np.random.default_rng(seed)
    neg, pos = side(rng, 200, 10), side(rng, 600, 40)
    counts, edges = zero_anchored(neg, pos)
    lo, hi = kl_independent_range(counts, edges, steps=255)
    t_neg, t_pos = round(-lo / 0.5), round(hi / 0.5)
    assert lo != -hi  # independent: not forced symmetric
    # Each side is the KL optimum of its side for complementary shares of the 255 levels,
    # the positive share close to the affine proportion of the thresholds.
    share = round(255 * t_pos / (t_pos + t_neg))
    nearby = sorted(range(share - 16, share + 17), key=lambda s: abs(s - share))
    assert any(
        kl_threshold_bins(pos, s) == t_pos and kl_threshold_bins(neg, 255 - s) == t_neg
        for s in nearby
    )


def test_independent_mode_gives_all_levels_to_one_sided_data():
    rng = np.random.default_rng(3)
    pos = side(rng, 800, 50)
    counts, edges = zero_anchored(torch.zeros(0, dtype=torch.int64), pos)
    lo, hi = kl_independent_range(counts, edges, steps=255)
    assert lo == 0.0 and hi == kl_threshold_bins(pos, 255) * 0.5
