"""Fixed-point requantization (Jacob et al. 2018, section 2.2; gemmlowp / TFLite semantics).

A real multiplier ``M`` (in practice ``S_in * S_w / S_out`` in (0, 1)) is stored as an int32
``M0`` in ``[2^30, 2^31)`` and a right shift ``n`` with ``M = M0 * 2^-31 * 2^-n``. Applying it to
an int32 accumulator takes one rounding doubling high multiply and one rounding right shift, so no
floating point is needed at inference time. All functions operate on integer tensors and use int64
internally only to hold exact intermediate products.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from eightbit.core.qparams import QParams

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

Activation = Literal["none", "relu", "relu6"]


@dataclass(frozen=True)
class FixedPointMultiplier:
    """``M = multiplier * 2^-31 * 2^-shift``; tensors are 0-d (per-tensor) or 1-d (per-channel).

    ``shift`` is a right shift; it is negative when ``M >= 1`` (a left shift).
    """

    multiplier: Tensor  # int32, values in [2^30, 2^31) (0 for M == 0)
    shift: Tensor  # int32

    def real_value(self) -> Tensor:
        """The represented real multiplier, in float64 (for tests and diagnostics)."""
        return self.multiplier.double() * torch.pow(2.0, -31.0 - self.shift.double())


def quantize_multiplier(real_multiplier: Tensor | float) -> FixedPointMultiplier:
    """Decompose positive real multipliers into ``(M0, shift)`` with ``M0`` in ``[2^30, 2^31)``."""
    real = torch.as_tensor(real_multiplier, dtype=torch.float64)
    if not bool(torch.all(real >= 0)) or not bool(torch.isfinite(real).all()):
        raise ValueError("real multipliers must be finite and non-negative")
    m0s, shifts = [], []
    for value in real.reshape(-1).tolist():
        if value == 0.0:
            m0s.append(0)
            shifts.append(0)
            continue
        fraction, exponent = math.frexp(value)  # value = fraction * 2^exponent, fraction in [.5, 1)
        m0 = round(fraction * 2**31)
        if m0 == 2**31:  # rounding carried into the next power of two
            m0 //= 2
            exponent += 1
        if -exponent > 62:  # below the smallest representable multiplier: it rounds to zero
            m0, exponent = 0, 0
        m0s.append(m0)
        shifts.append(-exponent)
    shape = real.shape
    return FixedPointMultiplier(
        torch.tensor(m0s, dtype=torch.int32).reshape(shape),
        torch.tensor(shifts, dtype=torch.int32).reshape(shape),
    )


def saturating_rounding_doubling_high_mul(a: Tensor, b: Tensor) -> Tensor:
    """int32 high half of ``2 * a * b``, rounded to nearest (ties toward +inf), saturated.

    gemmlowp's ``SaturatingRoundingDoublingHighMul``: ``(a * b + nudge) / 2^31`` with C's
    truncating division, where ``nudge`` is ``2^30`` for a non-negative product and
    ``1 - 2^30`` otherwise. The only overflow, ``a == b == INT32_MIN``, saturates to INT32_MAX.
    """
    product = a.long() * b.long()
    nudge = torch.where(product >= 0, 2**30, 1 - 2**30)
    high = torch.div(product + nudge, 2**31, rounding_mode="trunc")
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return torch.where(overflow, INT32_MAX, high).int()


def rounding_divide_by_pot(x: Tensor, exponent: Tensor | int) -> Tensor:
    """``x / 2^exponent``, to nearest with ties away from zero (gemmlowp RoundingDivideByPOT)."""
    x64 = x.long()
    exp = torch.as_tensor(exponent, dtype=torch.int64)
    if bool(torch.any(exp < 0)) or bool(torch.any(exp > 62)):
        raise ValueError("rounding shift exponent must be in [0, 62]")
    mask = (torch.ones_like(exp) << exp) - 1
    remainder = x64 & mask
    threshold = (mask >> 1) + (x64 < 0).long()
    return ((x64 >> exp) + (remainder > threshold).long()).to(x.dtype)


def multiply_by_quantized_multiplier(acc: Tensor, fpm: FixedPointMultiplier) -> Tensor:
    """Scale int32 accumulators by ``M``: left shift (if ``M >= 1``), SRDHM, rounding right shift.

    Per-channel multipliers broadcast along the last dimension of ``acc``.
    """
    left = torch.clamp(-fpm.shift, min=0).long()
    right = torch.clamp(fpm.shift, min=0).long()
    shifted = torch.clamp(acc.long() << left, INT32_MIN, INT32_MAX).int()
    high = saturating_rounding_doubling_high_mul(shifted, fpm.multiplier)
    return rounding_divide_by_pot(high, right)


def activation_bounds(out: QParams, activation: Activation = "none") -> tuple[int, int]:
    """Integer clamp bounds that implement ``activation`` on the requantized output.

    Jacob et al. fuse ReLU and ReLU6 into the final clamp: ReLU clamps at the zero point, ReLU6
    additionally at the integer that represents 6.0.
    """
    if out.per_channel:
        raise ValueError("output quantization must be per-tensor")
    lo, hi = out.qmin, out.qmax
    zero = int(out.zero_point)
    if activation in ("relu", "relu6"):
        lo = max(lo, zero)
    if activation == "relu6":
        hi = min(hi, zero + round(6.0 / float(out.scale)))
    elif activation != "none" and activation != "relu":
        raise ValueError(f"unknown activation {activation!r}; expected none, relu or relu6")
    return lo, hi


def requantize(
    acc: Tensor,
    fpm: FixedPointMultiplier,
    out: QParams,
    activation: Activation = "none",
) -> Tensor:
    """int32 accumulators -> ``out.dtype``: ``clamp(Z_out + M * acc)`` with fused activation."""
    lo, hi = activation_bounds(out, activation)
    scaled = multiply_by_quantized_multiplier(acc, fpm).long() + int(out.zero_point)
    return torch.clamp(scaled, lo, hi).to(out.dtype)
