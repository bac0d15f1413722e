"""Fixed-point requantization checked against exact rational arithmetic (fractions.Fraction)."""

from fractions import Fraction

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from eightbit.core import (
    multiply_by_quantized_multiplier,
    qparams_from_range,
    quantize_multiplier,
    requantize,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)

int32s = st.integers(-(2**31), 2**31 - 1)


def round_half_up(q: Fraction) -> int:
    """Exact rounding to nearest, ties toward +infinity (what gemmlowp's SRDHM nudge gives)."""
    return int((q + Fraction(1, 2)).__floor__())


def round_half_away(q: Fraction) -> int:
    """Exact rounding to nearest, ties away from zero."""
    n = abs(q)
    r = int(n + Fraction(1, 2))
    return r if q >= 0 else -r


@given(real=st.floats(1e-9, 1e3, allow_nan=False))
def test_quantize_multiplier_normalized_and_accurate(real):
    fpm = quantize_multiplier(real)
    m0, shift = int(fpm.multiplier), int(fpm.shift)
    assert 2**30 <= m0 < 2**31
    represented = (
        Fraction(m0) / 2 ** (31 + shift) if shift >= -31 else Fraction(m0 * 2**-shift, 2**31)
    )
    # M0 is rounded to 31 fractional bits of the mantissa: error at most half of 2^-31 relative.
    assert abs(represented - Fraction(real)) <= Fraction(real) * Fraction(1, 2**31)


def test_quantize_multiplier_zero_and_invalid():
    fpm = quantize_multiplier(0.0)
    assert int(fpm.multiplier) == 0
    with pytest.raises(ValueError, match="non-negative"):
        quantize_multiplier(-1.0)


@given(a=int32s, b=int32s)
def test_srdhm_matches_exact_rational(a, b):
    got = int(saturating_rounding_doubling_high_mul(torch.tensor(a), torch.tensor(b)))
    if a == b == -(2**31):
        assert got == 2**31 - 1
    else:
        assert got == round_half_up(Fraction(a * b, 2**31))


def test_srdhm_ties_round_up():
    half = torch.tensor(2**30)  # 0.5 in Q31
    got = saturating_rounding_doubling_high_mul(torch.tensor([3, -3, 5, -5]), half)
    assert got.tolist() == [2, -1, 3, -2]


@given(x=int32s, exponent=st.integers(0, 31))
def test_rounding_divide_by_pot_is_exact_round_half_away(x, exponent):
    got = int(rounding_divide_by_pot(torch.tensor(x, dtype=torch.int32), exponent))
    assert got == round_half_away(Fraction(x, 2**exponent))


@given(acc=st.integers(-(2**24), 2**24), real=st.floats(1e-6, 0.999))
def test_multiplier_within_one_lsb_of_exact_product(acc, real):
    fpm = quantize_multiplier(real)
    got = int(multiply_by_quantized_multiplier(torch.tensor([acc], dtype=torch.int32), fpm)[0])
    assert abs(got - round_half_away(Fraction(acc) * Fraction(real))) <= 1


def test_multiplier_above_one_uses_left_shift():
    fpm = quantize_multiplier(torch.tensor([2.5, 0.25]))
    acc = torch.tensor([[100, 100], [-3, -3]], dtype=torch.int32)
    # -3 * 2.5 = -7.5 is a tie inside SRDHM (after the left shift), which rounds it up to -7
    assert multiply_by_quantized_multiplier(acc, fpm).tolist() == [[250, 25], [-7, -1]]


def test_requantize_clamps_and_fuses_relu():
    out = qparams_from_range(-1.0, 6.0)  # uint8, zero point 36
    zp = int(out.zero_point)
    fpm = quantize_multiplier(1.0)
    acc = torch.tensor([-1000, -5, 0, 5, 1000], dtype=torch.int32)
    assert requantize(acc, fpm, out).tolist() == [0, zp - 5, zp, zp + 5, 255]
    assert requantize(acc, fpm, out, "relu").tolist() == [zp, zp, zp, zp + 5, 255]
    six = zp + round(6.0 / float(out.scale))
    assert requantize(acc, fpm, out, "relu6").tolist() == [zp, zp, zp, zp + 5, six]
    with pytest.raises(ValueError, match="unknown activation"):
        requantize(acc, fpm, out, "gelu")  # type: ignore[arg-type]
