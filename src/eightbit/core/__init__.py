"""Quantization math on plain tensors: schemes, (fake-)quantization, fixed-point arithmetic.

Nothing here knows about modules or models; every function is pure.
"""

from eightbit.core.fixedpoint import (
    FixedPointMultiplier,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    requantize,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)
from eightbit.core.ops import dequantize, fake_quantize, quantize
from eightbit.core.qparams import QParams, nudged_range, qparams_from_range, qrange

__all__ = [
    "FixedPointMultiplier",
    "QParams",
    "dequantize",
    "fake_quantize",
    "multiply_by_quantized_multiplier",
    "nudged_range",
    "qparams_from_range",
    "qrange",
    "quantize",
    "quantize_multiplier",
    "requantize",
    "rounding_divide_by_pot",
    "saturating_rounding_doubling_high_mul",
]
