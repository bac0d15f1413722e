"""Growing histogram: exact counts, bounded memory, order invariance, masks, NaN handling."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from eightbit.calibration import HistogramObserver, ObserverConfig, ObserverError

finite = st.floats(-1e6, 1e6, width=32, allow_subnormal=False)
batch = st.lists(finite, min_size=1, max_size=30)


def observe_all(batches, bins):
    obs = HistogramObserver(ObserverConfig(bins=bins))
    for values in batches:
        obs(torch.tensor(values, dtype=torch.float32))
    return obs


def occupied(obs):
    """{left edge: count} of the non-empty bins."""
    edges = obs.edges()
    return {float(edges[i]): int(obs.counts[i]) for i in torch.nonzero(obs.counts).flatten()}


@given(batches=st.lists(batch, min_size=1, max_size=8), bins=st.sampled_from([16, 100, 2048]))
def test_growth_equals_histogram_of_all_data_at_once(batches, bins):
    obs = observe_all(batches, bins)
    data = np.array([v for b in batches for v in b], dtype=np.float32).astype(np.float64)
    edges = obs.edges().numpy()
    expected, _ = np.histogram(data, bins=edges)
    assert np.array_equal(obs.counts.numpy(), expected)
    assert int(obs.counts.sum()) == data.size  # nothing lost or double counted
    assert edges[0] <= data.min() and data.max() < edges[-1]
    assert 0.0 in edges  # 0 stays a bin edge
    assert float(obs.min_val) == data.min() and float(obs.max_val) == data.max()


@given(batches=st.lists(batch, min_size=2, max_size=6))
def test_batch_order_does_not_matter(batches):
    forward, backward = observe_all(batches, 64), observe_all(batches[::-1], 64)
    assert float(forward.width) == float(backward.width)
    assert occupied(forward) == occupied(backward)


def test_width_is_the_smallest_power_of_two_that_fits():
    obs = observe_all([[0.5, -0.25], [3.0], [-7.0]], 16)
    assert obs.width == 1.0  # [-7, 3] needs 11 bins of 1.0; 0.5 would need 21 > 16
    lo, hi = obs.edges()[0], obs.edges()[-1]
    assert lo <= -7.0 and hi > 3.0


def test_all_zero_start_then_growth():
    obs = observe_all([[0.0, 0.0], [0.0], [1e-3, -2e-3], [5.0]], 32)
    assert int(obs.counts.sum()) == 6
    data = np.array([0, 0, 0, 1e-3, -2e-3, 5.0], dtype=np.float32).astype(np.float64)
    assert np.array_equal(obs.counts.numpy(), np.histogram(data, obs.edges().numpy())[0])


def test_memory_is_bounded_whatever_the_number_of_batches():
    obs = HistogramObserver(ObserverConfig(bins=128))
    sizes = {k: v.numel() for k, v in obs.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    for step in range(200):
        obs(torch.randn(64, generator=gen) * (1.05**step))
        assert {k: v.numel() for k, v in obs.state_dict().items()} == sizes
    assert sum(sizes.values()) == 128 + 4
    assert int(obs.counts.sum()) == 200 * 64


def test_mask_excludes_padding_positions():
    x = torch.randn(3, 6, 4)  # (batch, time, hidden)
    mask = torch.arange(6)[None, :] < torch.tensor([6, 2, 4])[:, None]  # (batch, time)
    x[~mask] = torch.tensor([1e9, -torch.inf, torch.nan, 7.0])  # padding garbage
    masked = HistogramObserver(ObserverConfig(bins=64))
    masked(x, mask)
    reference = HistogramObserver(ObserverConfig(bins=64))
    reference(x[mask])
    assert torch.equal(masked.counts, reference.counts)
    assert masked.width == reference.width and int(masked.counts.sum()) == int(mask.sum()) * 4


@pytest.mark.parametrize("bad", [torch.nan, torch.inf])
def test_nan_or_inf_at_counted_positions_raise(bad):
    obs = HistogramObserver()
    with pytest.raises(ObserverError, match="calibration data must be finite"):
        obs(torch.tensor([1.0, bad, 2.0]))


def test_state_dict_round_trip_and_determinism():
    x = torch.randn(1000, generator=torch.Generator().manual_seed(3)) * 4
    first, second = HistogramObserver(), HistogramObserver()
    first(x)
    second(x)
    assert all(torch.equal(a, b) for a, b in zip(first.range(), second.range(), strict=True))
    fresh = HistogramObserver()
    fresh.load_state_dict(first.state_dict())
    assert torch.equal(fresh.counts, first.counts) and fresh.width == first.width
    assert all(torch.equal(a, b) for a, b in zip(first.range(), fresh.range(), strict=True))


def test_empty_or_fully_masked_batches_count_nothing():
    obs = HistogramObserver(ObserverConfig(bins=32))
    obs(torch.zeros(0))
    obs(torch.ones(2, 3), torch.zeros(2, dtype=torch.bool))
    with pytest.raises(ObserverError, match="no data"):
        obs.range()


def test_histogram_is_per_tensor_only():
    with pytest.raises(ObserverError, match="per tensor"):
        HistogramObserver(ObserverConfig(axis=0))
