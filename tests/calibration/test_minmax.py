"""Min/max and moving-average observers: exact ranges, EMA formula, per channel, masks, state."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from eightbit.calibration import (
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    ObserverConfig,
    ObserverError,
)

values = st.lists(st.floats(-1e4, 1e4, width=32), min_size=1, max_size=40)


@given(batches=st.lists(values, min_size=1, max_size=5))
def test_minmax_is_exact_over_all_batches(batches):
    obs = MinMaxObserver()
    for batch in batches:
        x = torch.tensor(batch)
        assert obs(x) is x  # forward returns its input unchanged
    flat = torch.tensor([v for batch in batches for v in batch])
    lo, hi = obs.range()
    assert float(lo) == float(flat.min()) and float(hi) == float(flat.max())


def test_minmax_per_channel_along_any_axis():
    x = torch.randn(4, 3, 5)
    for axis in (0, 1, -1):
        obs = MinMaxObserver(ObserverConfig(axis=axis))
        for part in x.split(1, dim=1 if axis == 0 else 0):  # batches along another dim
            obs(part)
        lo, hi = obs.range()
        moved = x.movedim(axis, 0).reshape(x.shape[axis], -1)
        assert torch.equal(lo, moved.amin(1)) and torch.equal(hi, moved.amax(1))
        qp = obs.calculate_qparams()
        assert qp.axis == axis and qp.scale.shape == (x.shape[axis],)


@given(batches=st.lists(values, min_size=1, max_size=6), decay=st.floats(0.0, 0.99))
def test_ema_follows_the_formula_first_batch_initializes(batches, decay):
    obs = MovingAverageMinMaxObserver(ObserverConfig(method="ema", ema_decay=decay))
    ema_lo = ema_hi = None
    for batch in batches:
        x = torch.tensor(batch)
        obs(x)
        lo, hi = float(x.min()), float(x.max())
        if ema_lo is None:
            ema_lo, ema_hi = lo, hi
        else:
            ema_lo = decay * ema_lo + (1 - decay) * lo
            ema_hi = decay * ema_hi + (1 - decay) * hi
    got_lo, got_hi = obs.range()
    assert float(got_lo) == pytest.approx(ema_lo, rel=1e-5, abs=1e-3)
    assert float(got_hi) == pytest.approx(ema_hi, rel=1e-5, abs=1e-3)


def test_symmetric_ema_tracks_max_abs_like_q8bert():
    obs = MovingAverageMinMaxObserver(ObserverConfig(method="ema", symmetric=True, ema_decay=0.5))
    obs(torch.tensor([-4.0, 1.0]))  # max|x| = 4
    obs(torch.tensor([-1.0, 2.0]))  # max|x| = 2
    lo, hi = obs.range()
    assert float(hi) == 3.0 and float(lo) == -3.0  # 0.5 * 4 + 0.5 * 2
    qp = obs.calculate_qparams()
    assert int(qp.zero_point) == 128 and float(qp.scale) == pytest.approx(3.0 / 127.5)


def test_ema_per_channel():
    obs = MovingAverageMinMaxObserver(ObserverConfig(method="ema", axis=1, ema_decay=0.75))
    a, b = torch.randn(8, 3), torch.randn(8, 3)
    obs(a)
    obs(b)
    lo, hi = obs.range()
    assert torch.allclose(hi, 0.75 * a.amax(0) + 0.25 * b.amax(0))
    assert torch.allclose(lo, 0.75 * a.amin(0) + 0.25 * b.amin(0))


@pytest.mark.parametrize("cls", [MinMaxObserver, MovingAverageMinMaxObserver])
def test_mask_excludes_padding_positions(cls):
    x = torch.randn(2, 5, 4)  # (batch, time, hidden)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    x[0, 3:] = torch.tensor([1e6, -torch.inf, torch.nan, 5.0])  # padding: huge, inf, NaN
    obs = cls(ObserverConfig(method="minmax" if cls is MinMaxObserver else "ema"))
    obs(x, mask)
    lo, hi = obs.range()
    kept = x[mask]
    assert float(lo) == float(kept.min()) and float(hi) == float(kept.max())


@pytest.mark.parametrize("cls", [MinMaxObserver, MovingAverageMinMaxObserver])
def test_fully_masked_batch_changes_nothing(cls):
    obs = cls()
    obs(torch.tensor([[1.0, -2.0]]))
    before = obs.range()
    obs(torch.tensor([[50.0, -50.0]]), torch.tensor([False]))
    assert all(torch.equal(a, b) for a, b in zip(before, obs.range(), strict=True))


@pytest.mark.parametrize("bad", [torch.nan, torch.inf, -torch.inf])
def test_nan_and_inf_are_refused(bad):
    with pytest.raises(ObserverError, match=r"\d NaN and \d infinite values"):
        MinMaxObserver()(torch.tensor([0.0, bad]))


def test_range_before_any_data_is_a_clear_error():
    with pytest.raises(ObserverError, match="no data"):
        MinMaxObserver().range()


def test_bad_mask_shape_is_a_clear_error():
    with pytest.raises(ObserverError, match="mask"):
        MinMaxObserver()(torch.zeros(2, 3, 4), torch.ones(3, 2, dtype=torch.bool))


def test_ema_state_survives_state_dict_round_trip():
    trained = MovingAverageMinMaxObserver(ObserverConfig(method="ema", axis=0))
    trained(torch.randn(3, 7))
    trained(torch.randn(3, 7))
    fresh = MovingAverageMinMaxObserver(ObserverConfig(method="ema", axis=0))
    fresh.load_state_dict(trained.state_dict())  # per-channel shapes adopted from the file
    assert all(torch.equal(a, b) for a, b in zip(trained.range(), fresh.range(), strict=True))
    assert set(trained.state_dict()) == {"min_val", "max_val"}
