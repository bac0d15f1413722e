"""fbgemm backend: torch's packed x86 INT8 GEMM (``torch.ops.quantized``).

torch's quantized dtypes are deprecated (pytorch issue 184982), so they never leave this file: our
plain int8 weights and scales are wrapped into quantized tensors here, zero-copy, only to call the
packed ops. On AVX2 without VNNI fbgemm multiplies with ``vpmaddubsw``, which saturates int16
pairs (255 * 127 * 2 > 32767): it is exact only for 7-bit activations, so this backend refuses
activation ranges wider than 128 levels (``reduce_range``), as torch's own fbgemm qconfig does.
Its epilogues are float, so requantized outputs may differ from the reference by 1 LSB.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from eightbit.core.fixedpoint import Activation, activation_bounds
from eightbit.core.ops import dequantize
from eightbit.core.qparams import QParams, nudged_range
from eightbit.kernels.base import (
    PreparedLinear,
    QuantizedWeight,
    check_input_qparams,
    register_backend,
)

_REDUCED_LEVELS = 127


def _as_qint8(qweight: QuantizedWeight) -> Tensor:
    zero_points = torch.zeros(qweight.out_features, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the deprecation notice of quantized dtypes
        return torch._make_per_channel_quantized_tensor(
            qweight.weight, qweight.scale.double(), zero_points, 0
        )


@register_backend("fbgemm")
class FbgemmLinear(PreparedLinear):
    """Static and dynamic INT8 linear on fbgemm's packed weights (7-bit activations)."""

    def __init__(self, qweight: QuantizedWeight) -> None:
        super().__init__(qweight)
        self._packed = torch.ops.quantized.linear_prepack(_as_qint8(qweight), qweight.bias)

    def linear_fp32(self, x: Tensor, input_qp: QParams) -> Tensor:
        check_input_qparams(input_qp, _REDUCED_LEVELS)
        # fbgemm clamps to the full [0, 255] when it quantizes: clip to our 7-bit range first
        lo, hi = nudged_range(input_qp)
        return torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
            x.clamp(float(lo), float(hi)),
            float(input_qp.scale),
            int(input_qp.zero_point),
            self._packed,
        )

    def linear_quantized_fp32(self, x_q: Tensor, input_qp: QParams) -> Tensor:
        # fbgemm's only fp32-output op takes fp32 input: hand it the dequantized values, which
        # it quantizes back to exactly x_q (|fl(fl(q * s) / s) - q| is far below one half)
        return self.linear_fp32(dequantize(x_q, input_qp), input_qp)

    def linear_requant(
        self,
        x_q: Tensor,
        input_qp: QParams,
        output_qp: QParams,
        activation: Activation = "none",
    ) -> Tensor:
        check_input_qparams(input_qp, _REDUCED_LEVELS)
        if output_qp.dtype != torch.uint8:
            raise ValueError("fbgemm requantizes to uint8 only")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            qx = torch._make_per_tensor_quantized_tensor(
                x_q, float(input_qp.scale), int(input_qp.zero_point)
            )
        out = torch.ops.quantized.linear(
            qx, self._packed, float(output_qp.scale), int(output_qp.zero_point)
        ).int_repr()
        lo, hi = activation_bounds(output_qp, activation)
        return out.clamp_(lo, hi)

    def linear_dynamic(self, x: Tensor, per_token: bool = False) -> Tensor:
        if per_token:
            raise ValueError("fbgemm dynamic linear supports per-tensor activation ranges only")
        return torch.ops.quantized.linear_dynamic(x, self._packed, True)
