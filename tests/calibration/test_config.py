"""ObserverConfig validation, the method registry and make_observer over every method."""

import pytest
import torch

from eightbit.calibration import (
    CALIBRATION_METHODS,
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    Observer,
    ObserverConfig,
    ObserverError,
    make_observer,
)
from eightbit.calibration.registry import registered_methods
from eightbit.core import QParams, qrange
from eightbit.errors import EightbitError


def test_method_names_are_the_contract():
    assert CALIBRATION_METHODS == (
        "minmax",
        "ema",
        "kl-symmetric",
        "kl-independent",
        "kl-conjugate",
        "percentile",
        "mse",
    )
    assert set(registered_methods()) == set(CALIBRATION_METHODS)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "entropy"}, "unknown calibration method"),
        ({"dtype": torch.int32}, "dtype"),
        ({"method": "mse", "axis": 0}, "per tensor"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"bins": 4}, "bins"),
        ({"percentile": 40.0}, "percentile"),
    ],
)
def test_bad_configs_name_the_problem(kwargs, match):
    with pytest.raises(ObserverError, match=match):
        ObserverConfig(**kwargs)
    assert issubclass(ObserverError, EightbitError)  # the CLI turns it into one line, exit 2


def test_factory_builds_the_right_classes():
    assert type(make_observer()) is MinMaxObserver
    assert type(make_observer(ObserverConfig(method="ema"))) is MovingAverageMinMaxObserver
    for method in CALIBRATION_METHODS[2:]:
        assert type(make_observer(ObserverConfig(method=method))) is HistogramObserver


@pytest.mark.parametrize("method", CALIBRATION_METHODS)
@pytest.mark.parametrize("dtype, symmetric", [(torch.uint8, False), (torch.int8, True)])
def test_every_method_gives_valid_deterministic_qparams(method, dtype, symmetric):
    config = ObserverConfig(method=method, dtype=dtype, symmetric=symmetric, bins=256)
    results = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(7)
        obs = make_observer(config)
        assert isinstance(obs, Observer)
        for scale in (1.0, 3.0, 0.5):
            x = torch.randn(4, 16, 8, generator=gen) * scale + 0.3
            assert torch.equal(obs(x), x)
        qp = obs.calculate_qparams()
        assert isinstance(qp, QParams)
        assert (qp.qmin, qp.qmax) == qrange(dtype)
        assert float(qp.scale) > 0 and qp.qmin <= int(qp.zero_point) <= qp.qmax
        lo, hi = obs.range()
        assert float(lo) <= 0.0 <= float(hi) or method in ("minmax", "ema")
        results.append((qp.scale, qp.zero_point, lo, hi))
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


@pytest.mark.parametrize("method", ["kl-symmetric", "kl-conjugate"])
def test_symmetric_modes_give_symmetric_ranges(method):
    obs = make_observer(ObserverConfig(method=method, bins=512))
    obs(torch.randn(4000, generator=torch.Generator().manual_seed(1)) * 2 + 1.5)
    lo, hi = obs.range()
    assert float(lo) == -float(hi) and float(hi) > 0
    assert obs.calculate_qparams().zero_point.item() == 128


@pytest.mark.parametrize("method", ["percentile", "mse", "minmax", "ema"])
def test_symmetric_flag_gives_symmetric_ranges(method):
    obs = make_observer(ObserverConfig(method=method, symmetric=True, bins=512))
    obs(torch.randn(4000, generator=torch.Generator().manual_seed(2)) + 2.0)
    lo, hi = obs.range()
    assert float(lo) == -float(hi) and float(hi) > 0
