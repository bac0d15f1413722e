"""Quantization parameters: the affine map ``r = scale * (q - zero_point)``.

Jacob et al. 2018 (section 2.1): the zero point is an integer of the quantized type chosen so that
the real value 0.0 is exactly representable ("nudging"). Symmetric schemes (Q8BERT) fix the zero
point at 0 for signed types. Weights use the narrow range [-127, 127] so that no int8 product pair
can overflow an int16 intermediate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

_INT_RANGES: dict[torch.dtype, tuple[int, int]] = {
    torch.int8: (-128, 127),
    torch.uint8: (0, 255),
    torch.int32: (-(2**31), 2**31 - 1),
}

# Smallest scale we ever produce: a constant (all-zero) tensor still gets a valid, finite map.
MIN_SCALE = float(torch.finfo(torch.float32).eps)


def qrange(dtype: torch.dtype, *, narrow: bool = False) -> tuple[int, int]:
    """Integer range ``(qmin, qmax)`` of ``dtype``; ``narrow`` drops the lowest value.

    >>> qrange(torch.int8, narrow=True)
    (-127, 127)
    """
    if dtype not in _INT_RANGES:
        raise ValueError(f"unsupported quantized dtype {dtype}; expected int8, uint8 or int32")
    qmin, qmax = _INT_RANGES[dtype]
    return (qmin + 1, qmax) if narrow else (qmin, qmax)


@dataclass(frozen=True)
class QParams:
    """Scale and zero point of a per-tensor (``axis=None``) or per-channel quantization.

    ``scale`` is float32 and ``zero_point`` int32; both are 0-d for per-tensor and 1-d of length
    ``x.shape[axis]`` for per-channel.
    """

    scale: Tensor
    zero_point: Tensor
    dtype: torch.dtype
    qmin: int
    qmax: int
    axis: int | None = None

    def __post_init__(self) -> None:
        if self.scale.shape != self.zero_point.shape:
            raise ValueError(
                f"scale shape {tuple(self.scale.shape)} != zero_point shape "
                f"{tuple(self.zero_point.shape)}"
            )
        if (self.axis is None) != (self.scale.dim() == 0):
            raise ValueError("per-tensor qparams need 0-d scale; per-channel need 1-d and an axis")
        if not bool(torch.all(self.scale > 0)):
            raise ValueError("scale must be strictly positive")
        lo, hi = qrange(self.dtype)
        if not lo <= self.qmin < self.qmax <= hi:
            raise ValueError(f"[{self.qmin}, {self.qmax}] is not inside the range of {self.dtype}")

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def broadcast_to(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Scale and zero point reshaped to broadcast against ``x``."""
        if self.axis is None:
            return self.scale, self.zero_point
        shape = [1] * x.dim()
        shape[self.axis] = -1
        return self.scale.reshape(shape), self.zero_point.reshape(shape)


def qparams_from_range(
    min_val: Tensor | float,
    max_val: Tensor | float,
    *,
    dtype: torch.dtype = torch.uint8,
    symmetric: bool = False,
    narrow: bool = False,
    reduce_range: bool = False,
    axis: int | None = None,
) -> QParams:
    """Quantization parameters that map ``[min_val, max_val]`` onto ``dtype``.

    The range is first widened to contain 0.0. Affine: ``scale = (max - min) / (qmax - qmin)``
    and the zero point is rounded to an integer (so the representable range is *nudged* and 0.0 is
    exact). Symmetric: ``scale = max(|min|, |max|) / ((qmax - qmin) / 2)`` and the zero point is the
    middle of the range (0 for signed types), i.e. Q8BERT's ``S = M / max|x|`` with ``M = 127``.
    ``reduce_range`` uses 7 bits (the lower half of the levels), for kernels whose int16
    intermediates would otherwise saturate (fbgemm on AVX2).
    """
    qmin, qmax = qrange(dtype, narrow=narrow)
    if reduce_range:
        qmin, qmax = qmin // 2, qmax // 2
    lo = torch.clamp(torch.as_tensor(min_val, dtype=torch.float32), max=0.0)
    hi = torch.clamp(torch.as_tensor(max_val, dtype=torch.float32), min=0.0)
    if lo.shape != hi.shape or (axis is None) != (lo.dim() == 0):
        raise ValueError("min_val/max_val must both be scalars (per-tensor) or 1-d with an axis")
    if not (bool(torch.isfinite(lo).all()) and bool(torch.isfinite(hi).all())):
        raise ValueError(f"range [{min_val}, {max_val}] is not finite")
    if symmetric:
        amax = torch.maximum(-lo, hi).double()
        scale = torch.clamp(amax / ((qmax - qmin) / 2), min=MIN_SCALE)
        zero_point = torch.full_like(scale, (qmin + qmax + 1) // 2, dtype=torch.int32)
    else:
        scale = torch.clamp((hi.double() - lo.double()) / (qmax - qmin), min=MIN_SCALE)
        zero_point = torch.clamp(torch.round(qmin - lo.double() / scale), qmin, qmax).int()
    return QParams(scale.float(), zero_point, dtype, qmin, qmax, axis)


def nudged_range(qp: QParams) -> tuple[Tensor, Tensor]:
    """The real range ``[min, max]`` that ``qp`` represents exactly (0.0 is a grid point)."""
    scale = qp.scale.double()
    zp = qp.zero_point.double()
    return ((qp.qmin - zp) * scale).float(), ((qp.qmax - zp) * scale).float()
