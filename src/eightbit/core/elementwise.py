"""eightbit's float32 ``exp`` and exact (erf) GELU, defined by rounded IEEE operations.

Each function is a fixed sequence of float32 multiplies, adds, divisions and roundings with no
fused multiply-add, so the native kernels (``kernels/csrc/eightbit.h`` ``eb_expf8/16``,
``gelu.c``) compute the very same values: these are the reference backend's, and the tests
compare the native ones with them bit for bit. ``exp`` follows the textbook scheme (Cody-Waite
reduction by ``ln 2``, a Taylor polynomial, scaling by ``2^q``); ``erf`` is Abramowitz & Stegun
7.1.26 (absolute error below 1.5e-7). Both are within a few units in the last place of torch's
own functions (tested), which hand float32 to oneDNN or Sleef and differ among themselves in the
last bits.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _f32(value: float) -> Tensor:
    return torch.tensor(value, dtype=torch.float32)


EXP_LO, EXP_HI = _f32(-104.0), _f32(88.7)  # 0 below, inf above
LOG2E = _f32(math.log2(math.e))
LN2_HI = _f32(1420 / 2048)  # 9 significant bits: q * LN2_HI is exact for |q| <= 150
LN2_LO = _f32(math.log(2.0) - 1420 / 2048)
EXP_TAYLOR = tuple(_f32(1.0 / math.factorial(k)) for k in range(7, -1, -1))  # 1/7! ... 1/0!
ERF_P = _f32(0.3275911)
ERF_A = tuple(_f32(a) for a in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592))
ONE, HALF, SQRT1_2 = _f32(1.0), _f32(0.5), _f32(math.sqrt(0.5))


def _power_of_two(k: Tensor) -> Tensor:
    """``2.0 ** k`` for int32 ``k`` in the normal range, built from its exponent bits."""
    return ((k + 127) << 23).view(torch.float32)


def expf(d: Tensor) -> Tensor:
    """``e ** d`` of a float32 tensor: within 2 ulp over the normal range; 0 below -104, inf
    above 88.7, NaN for NaN."""
    x = d.clamp(EXP_LO, EXP_HI)
    q = torch.round(x * LOG2E)
    s = (x - q * LN2_HI) - q * LN2_LO
    p = EXP_TAYLOR[0]
    for c in EXP_TAYLOR[1:]:
        p = p * s + c
    qi = q.to(torch.int32)
    half = qi >> 1
    e = (p * _power_of_two(half)) * _power_of_two(qi - half)  # each factor stays normal
    e = torch.where(d < EXP_LO, torch.zeros_like(e), e)
    e = torch.where(d > EXP_HI, torch.full_like(e, math.inf), e)
    return torch.where(torch.isnan(d), d, e)


def erf(a: Tensor) -> Tensor:
    """Abramowitz & Stegun 7.1.26 of a float32 tensor, odd in ``a``."""
    t = ONE / (ONE + ERF_P * a.abs())
    poly = ERF_A[0]
    for c in ERF_A[1:]:
        poly = poly * t + c
    y = ONE - (poly * t) * expf(-(a * a))
    return torch.where(torch.signbit(a), -y, y)


def gelu(x: Tensor) -> Tensor:
    """Exact (erf) GELU, ``(x * 0.5) * (1 + erf(x / sqrt(2)))``, as every eightbit backend's
    :meth:`~eightbit.kernels.base.PreparedLinear.linear_gelu` computes it."""
    x = x.to(torch.float32)
    return (x * HALF) * (ONE + erf(x * SQRT1_2))
