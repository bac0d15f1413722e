"""Unit and property tests for schemes, quantize/dequantize and fake quantization."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from eightbit.core import (
    QParams,
    dequantize,
    fake_quantize,
    nudged_range,
    qparams_from_range,
    qrange,
    quantize,
)
from eightbit.kernels import native

finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)


def test_qrange_narrow_weights_never_use_minus_128():
    assert qrange(torch.int8, narrow=True) == (-127, 127)
    assert qrange(torch.uint8) == (0, 255)
    assert qrange(torch.int32) == (-(2**31), 2**31 - 1)
    with pytest.raises(ValueError, match="unsupported"):
        qrange(torch.float16)


@given(lo=finite, hi=finite)
def test_zero_is_exactly_representable(lo, hi):
    lo, hi = min(lo, hi), max(lo, hi)
    qp = qparams_from_range(lo, hi)
    assert qp.qmin <= int(qp.zero_point) <= qp.qmax
    zero = torch.zeros(3)
    assert torch.equal(dequantize(quantize(zero, qp), qp), zero)
    nlo, nhi = nudged_range(qp)
    assert float(nlo) <= 0.0 <= float(nhi)


@given(lo=finite, hi=finite, data=st.data())
def test_round_trip_error_at_most_half_a_step(lo, hi, data):
    lo, hi = min(lo, hi), max(lo, hi)
    qp = qparams_from_range(lo, hi)
    nlo, nhi = (float(v) for v in nudged_range(qp))
    values = data.draw(st.lists(st.floats(nlo, nhi, width=32), min_size=1, max_size=20))
    x = torch.tensor(values)
    err = (dequantize(quantize(x, qp), qp) - x).abs().max()
    assert float(err) <= float(qp.scale) * 0.5 * (1 + 1e-5) + 1e-6


@given(amax=st.floats(0.0010000000474974513, 1e4, width=32))
def test_symmetric_int8_maps_zero_to_zero_and_uses_127(amax):
    qp = qparams_from_range(-amax, amax / 3, dtype=torch.int8, symmetric=True, narrow=True)
    assert int(qp.zero_point) == 0
    assert float(qp.scale) == pytest.approx(amax / 127, rel=1e-6)
    q = quantize(torch.tensor([-amax, 0.0, amax]), qp)
    assert q.tolist() == [-127, 0, 127]


def test_symmetric_uint8_centres_at_128():
    qp = qparams_from_range(-2.0, 2.0, dtype=torch.uint8, symmetric=True)
    assert int(qp.zero_point) == 128


def test_per_channel_along_any_axis():
    x = torch.randn(4, 5, 6)
    for axis in range(3):
        dims = [d for d in range(3) if d != axis]
        lo, hi = x.amin(dim=dims), x.amax(dim=dims)
        qp = qparams_from_range(lo, hi, dtype=torch.int8, symmetric=True, narrow=True, axis=axis)
        err = (dequantize(quantize(x, qp), qp) - x).abs()
        scale, _ = qp.broadcast_to(x)
        assert bool((err <= scale / 2 + 1e-6).all())


def test_constant_zero_tensor_gets_finite_positive_scale():
    qp = qparams_from_range(0.0, 0.0)
    assert float(qp.scale) > 0
    assert torch.equal(quantize(torch.zeros(2), qp), torch.zeros(2, dtype=torch.uint8))


def test_invalid_qparams_are_rejected():
    with pytest.raises(ValueError, match="not finite"):
        qparams_from_range(float("-inf"), 1.0)
    with pytest.raises(ValueError, match="strictly positive"):
        QParams(torch.tensor(0.0), torch.tensor(0, dtype=torch.int32), torch.uint8, 0, 255)
    with pytest.raises(ValueError, match="per-channel"):
        QParams(torch.ones(3), torch.zeros(3, dtype=torch.int32), torch.uint8, 0, 255)


def test_quantize_saturates_out_of_range_values():
    qp = qparams_from_range(-1.0, 1.0, dtype=torch.int8, symmetric=True, narrow=True)
    assert quantize(torch.tensor([-100.0, 100.0]), qp).tolist() == [-127, 127]


def test_fake_quantize_equals_quantize_dequantize():
    x = torch.randn(64) * 3
    qp = qparams_from_range(-2.0, 2.5)
    assert torch.equal(fake_quantize(x, qp), dequantize(quantize(x, qp), qp))


def test_fake_quantize_straight_through_gradient():
    qp = qparams_from_range(-1.0, 1.0, dtype=torch.int8, symmetric=True, narrow=True)
    x = torch.tensor([-5.0, -0.3, 0.0, 0.42, 0.99, 7.0], requires_grad=True)
    fake_quantize(x, qp).sum().backward()
    # identity inside the representable range, zero where the value was clipped
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]


def test_reduce_range_uses_seven_bits():
    assert (qparams_from_range(-1.0, 1.0, reduce_range=True).qmax) == 127
    qp = qparams_from_range(-1.0, 1.0, dtype=torch.int8, reduce_range=True)
    assert (qp.qmin, qp.qmax) == (-64, 63)


@given(
    scale=st.floats(2.0**-30, 2.0**20, width=32),
    zero_point=st.integers(0, 255),
    symmetric=st.booleans(),
)
def test_quantize_recovers_every_dequantized_level_exactly(scale, zero_point, symmetric):
    """The integer FFN chain on the module path dequantizes fc1's uint8 output and fc2 quantizes
    it again: fl(fl(k * s) / s) lies within a few ulp of the integer k, far from a rounding tie,
    so every level comes back exactly (core quantize and the native kernel's alike)."""
    qmin = 1 if symmetric else 0
    qp = QParams(
        torch.tensor(scale), torch.tensor(max(zero_point, qmin), dtype=torch.int32),
        torch.uint8, qmin, 255,
    )  # fmt: skip
    levels = torch.arange(qmin, 256, dtype=torch.uint8)
    values = dequantize(levels, qp)
    assert torch.equal(quantize(values, qp), levels)
    if native.is_available():
        got = native.quantize_u8(values, float(qp.scale), int(qp.zero_point), qmin, 255)
        assert torch.equal(got, levels)
