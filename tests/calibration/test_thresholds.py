"""Percentile and MSE searches against direct computations on the data; outlier clipping."""

import pytest
import torch

from eightbit.calibration import (
    CALIBRATION_METHODS,
    HistogramObserver,
    ObserverConfig,
    make_observer,
    mse_range,
    percentile_range,
)
from eightbit.core import fake_quantize


def histogram_of(x, bins=2048):
    obs = HistogramObserver(ObserverConfig(bins=bins))
    obs(x)
    return obs


def laplace(n, seed):
    u = torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) - 0.5
    return (-torch.sign(u) * torch.log1p(-2 * u.abs())).float()


@pytest.mark.parametrize("p", [99.0, 99.9])
def test_percentile_matches_the_quantiles_of_the_data(p):
    x = torch.randn(100_000, generator=torch.Generator().manual_seed(0)) * 2 + 0.5
    obs = histogram_of(x)
    width = obs.width
    lo, hi = percentile_range(obs.counts, obs.edges(), p)
    q = torch.tensor([1 - p / 100, p / 100], dtype=torch.float64)
    exact = torch.quantile(x.double(), q)
    assert lo == pytest.approx(float(exact[0]), abs=width)
    assert hi == pytest.approx(float(exact[1]), abs=width)
    _, t = percentile_range(obs.counts, obs.edges(), p, symmetric=True)
    assert t == pytest.approx(float(torch.quantile(x.abs().double(), p / 100)), abs=width)


def data_error(x, lo, hi, steps=255):
    """Mean squared error of quantizing x on the grid of multiples of (hi - lo) / steps."""
    s = (hi - lo) / steps
    q = torch.round(torch.clamp(x.double(), lo, hi) / s) * s
    return float(((x.double() - q) ** 2).mean())


def test_symmetric_mse_threshold_is_near_the_best_on_the_data():
    x = laplace(50_000, 1)
    obs = histogram_of(x)
    _, t = mse_range(obs.counts, obs.edges(), steps=255, symmetric=True)
    amax = float(x.abs().max())
    best = min(data_error(x, -c, c) for c in torch.linspace(amax / 50, amax, 400).tolist())
    assert data_error(x, -t, t) <= 1.02 * best
    assert 0 < t <= amax


def test_two_sided_mse_thresholds_are_near_the_best_on_the_data():
    x = torch.cat([laplace(20_000, 2) * 0.5, laplace(20_000, 3).abs() * 2.0])  # skewed
    obs = histogram_of(x)
    lo, hi = mse_range(obs.counts, obs.edges(), steps=255)
    grid_lo = torch.linspace(float(x.min()), float(x.min()) / 10, 24).tolist()
    grid_hi = torch.linspace(float(x.max()) / 10, float(x.max()), 24).tolist()
    best = min(data_error(x, a, b) for a in grid_lo for b in grid_hi)
    assert data_error(x, lo, hi) <= 1.02 * best
    assert -lo < hi  # follows the skew


def test_heavy_tails_clipping_methods_beat_minmax():
    """Laplace bulk plus a few far outliers: minmax keeps them and loses resolution."""
    bulk = laplace(1_000_000, 4)
    outliers = torch.tensor([40.0, -35.0])
    x = torch.cat([bulk, outliers])
    errors, ranges = {}, {}
    for method in CALIBRATION_METHODS:
        obs = make_observer(ObserverConfig(method=method))
        for chunk in x.split(250_000):
            obs(chunk)
        ranges[method] = [float(v) for v in obs.range()]
        qp = obs.calculate_qparams()
        errors[method] = float(((fake_quantize(x, qp) - x) ** 2).mean())
    assert ranges["minmax"] == [-35.0, 40.0]
    for method in ("kl-symmetric", "kl-independent", "kl-conjugate", "percentile", "mse"):
        lo, hi = ranges[method]
        assert hi < 0.5 * 40.0 and lo > 0.5 * -35.0, (method, ranges[method])
        assert errors[method] < 0.5 * errors["minmax"], (method, errors)
