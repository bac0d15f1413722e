"""Properties of the threshold searches on arbitrary 0-anchored histograms, and the MSE
building blocks against direct computations."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from eightbit.calibration import (
    ObserverError,
    kl_conjugate_range,
    kl_independent_range,
    kl_symmetric_range,
    mse_range,
    percentile_range,
)
from eightbit.calibration.mse import clip_costs, rounding_costs
from eightbit.calibration.sides import split_at_zero

SEARCHES = {
    "kl-symmetric": lambda c, e: kl_symmetric_range(c, e, steps=255),
    "kl-independent": lambda c, e: kl_independent_range(c, e, steps=255),
    "kl-conjugate": lambda c, e: kl_conjugate_range(c, e, steps=255),
    "percentile": lambda c, e: percentile_range(c, e, 99.0),
    "percentile-symmetric": lambda c, e: percentile_range(c, e, 99.0, symmetric=True),
    "mse": lambda c, e: mse_range(c, e, steps=255),
    "mse-symmetric": lambda c, e: mse_range(c, e, steps=255, symmetric=True),
}
SYMMETRIC = {"kl-symmetric", "kl-conjugate", "percentile-symmetric", "mse-symmetric"}


@st.composite
def anchored_histograms(draw):
    counts = draw(st.lists(st.integers(0, 1000), min_size=2, max_size=300))
    if not any(counts):
        counts[0] = 1
    zero = draw(st.integers(0, len(counts)))  # index of the edge at 0.0
    width = 2.0 ** draw(st.integers(-8, 4))
    edges = (torch.arange(len(counts) + 1, dtype=torch.float64) - zero) * width
    return torch.tensor(counts), edges


@pytest.mark.parametrize("name", sorted(SEARCHES))
@given(hist=anchored_histograms())
def test_thresholds_are_edges_of_the_data_range_around_zero(name, hist):
    counts, edges = hist
    lo, hi = SEARCHES[name](counts, edges)
    split = split_at_zero(counts, edges)
    extent_neg = split.negative.numel() * split.width
    extent_pos = split.positive.numel() * split.width
    assert lo <= 0.0 <= hi
    if name in SYMMETRIC:
        assert lo == -hi and hi <= max(extent_neg, extent_pos)
    else:
        assert -extent_neg <= lo and hi <= extent_pos
    assert SEARCHES[name](counts, edges) == (lo, hi)  # deterministic


def test_clip_costs_equal_the_direct_sums():
    hist = torch.tensor([3.0, 0.0, 5.0, 1.0, 0.0, 2.0], dtype=torch.float64)
    outside, cost = clip_costs(hist)
    for k in range(len(hist) + 1):
        direct = sum(hist[b] * ((b - k) ** 2 + (b - k) + 1 / 3) for b in range(k, len(hist)))
        assert float(outside[k]) == float(hist[k:].sum())
        assert float(cost[k]) == pytest.approx(float(direct), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("step", [0.03, 0.4, 1.0, 2.5, 40.0])
def test_rounding_costs_equal_the_mean_error_of_uniform_values(step):
    hist = torch.tensor([2.0, 1.0, 4.0])  # bins of width 1
    table = rounding_costs(hist, torch.tensor([step]))
    for k in range(1, 4):
        direct = 0.0
        for b in range(k):
            x = b + (torch.arange(200_000, dtype=torch.float64) + 0.5) / 200_000
            direct += float(hist[b]) * float(((x - torch.round(x / step) * step) ** 2).mean())
        assert float(table[0, k]) == pytest.approx(direct, rel=1e-4)
    assert float(rounding_costs(hist, torch.tensor([1e-3]))[0, 3]) == pytest.approx(
        7 * 1e-6 / 12, rel=1e-3
    )  # fine grid: the s**2 / 12 noise model


def test_searches_reject_histograms_without_zero_on_their_lattice():
    counts = torch.ones(4)
    with pytest.raises(ObserverError, match=r"0\.0 on their lattice"):
        kl_symmetric_range(counts, torch.tensor([0.25, 1.25, 2.25, 3.25, 4.25]), steps=255)
    with pytest.raises(ObserverError, match="edges"):
        mse_range(counts, torch.linspace(0, 1, 4), steps=255)


def test_all_positive_histogram_is_padded_down_to_zero():
    counts = torch.tensor([0, 4, 1])
    edges = torch.tensor([2.0, 3.0, 4.0, 5.0])  # 0.0 is on the lattice, two bins below
    split = split_at_zero(counts, edges)
    assert split.negative.numel() == 0 and split.positive.tolist() == [0, 0, 0, 4, 1]
    assert math.isclose(split.width, 1.0)


def test_blocked_searches_equal_unblocked(monkeypatch):
    from eightbit.calibration import kl, mse

    gen = torch.Generator().manual_seed(5)
    counts = torch.poisson(torch.rand(300, generator=gen) * 50, generator=gen).long()
    counts[::7] = 0
    edges = (torch.arange(301, dtype=torch.float64) - 100) * 0.125
    searches = [s for name, s in sorted(SEARCHES.items()) if name.startswith(("kl", "mse"))]
    whole = [search(counts, edges) for search in searches]
    monkeypatch.setattr(kl, "BLOCK_ENTRIES", 1000)
    monkeypatch.setattr(mse, "BLOCK_ENTRIES", 1000)
    assert [search(counts, edges) for search in searches] == whole
