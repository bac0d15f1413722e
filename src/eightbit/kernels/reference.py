"""Integer-only reference backend: the definition of correct (Jacob et al. 2018, section 2.3).

Plain torch integer tensors, no quantized dtypes and no floating point between the int8 inputs and
the requantized int8 output. The zero-point terms are expanded as in eq. (7)-(8):
``sum_k (x - Z_x) w = sum_k x w - Z_x * colsum(w)`` (``Z_w = 0`` for our symmetric weights), so
the core is a plain integer GEMM and the zero-point cost is O(N).
"""

from __future__ import annotations

from torch import Tensor

from eightbit.core.fixedpoint import Activation, quantize_multiplier, requantize
from eightbit.core.ops import quantize
from eightbit.core.qparams import QParams, qparams_from_range
from eightbit.kernels.base import (
    KernelError,
    PreparedLinear,
    bias_to_int32,
    check_input_qparams,
    register_backend,
)


def int_gemm(x_q: Tensor, w_q: Tensor) -> Tensor:
    """Exact ``x_q @ w_q.T`` as int64 (M, N); float64 matmul is exact below 2^53."""
    if x_q.shape[1] * 255 * 127 >= 2**53:
        raise KernelError("reduction too long for the exact reference GEMM")
    return (x_q.double() @ w_q.double().T).long()


def zero_point_corrected(x_q: Tensor, zero_point: Tensor, w_q: Tensor) -> Tensor:
    """int32 ``sum_k (x_q - Z_x) * w_q`` via the row/column-sum expansion; checks for overflow."""
    col_sums = w_q.long().sum(dim=1)  # (N,)
    acc = int_gemm(x_q, w_q) - zero_point.long().reshape(-1, 1) * col_sums  # (M, N)
    if acc.numel() and (acc.abs().max() >= 2**31):
        raise KernelError("int32 accumulator overflow")
    return acc.int()


@register_backend("reference")
class ReferenceLinear(PreparedLinear):
    """Slow, obviously-correct integer linear layer."""

    def linear_fp32(self, x: Tensor, input_qp: QParams) -> Tensor:
        return self.linear_quantized_fp32(quantize(x, input_qp), input_qp)

    def linear_quantized_fp32(self, x_q: Tensor, input_qp: QParams) -> Tensor:
        check_input_qparams(input_qp)
        return self._dequantized(x_q, input_qp.zero_point, input_qp.scale)

    def linear_requant(
        self,
        x_q: Tensor,
        input_qp: QParams,
        output_qp: QParams,
        activation: Activation = "none",
    ) -> Tensor:
        check_input_qparams(input_qp)
        w = self.qweight
        acc = zero_point_corrected(x_q, input_qp.zero_point, w.weight)
        acc = acc + bias_to_int32(w.bias, input_qp.scale, w.scale)
        multiplier = quantize_multiplier(
            input_qp.scale.double() * w.scale.double() / output_qp.scale.double()
        )
        return requantize(acc, multiplier, output_qp, activation)

    def linear_dynamic(self, x: Tensor, per_token: bool = False) -> Tensor:
        if per_token:
            lo, hi = x.amin(dim=1), x.amax(dim=1)
            qp = qparams_from_range(lo, hi, axis=0)
        else:
            qp = qparams_from_range(x.min() if x.numel() else 0.0, x.max() if x.numel() else 0.0)
        x_q = quantize(x, qp)
        return self._dequantized(x_q, qp.zero_point, qp.scale.reshape(-1, 1))

    def _dequantized(self, x_q: Tensor, zero_point: Tensor, input_scale: Tensor) -> Tensor:
        """fp32 epilogue: ``acc * (S_x * S_w) + bias`` (two float32 roundings)."""
        w = self.qweight
        acc = zero_point_corrected(x_q, zero_point, w.weight)
        out = acc.float() * (input_scale * w.scale)
        return out if w.bias is None else out + w.bias
