"""Native AVX2 backend: our exact u8 x s8 -> int32 GEMM (:mod:`eightbit.kernels.native`), on
AVX512-VNNI microkernels where the CPU has them (the backend keeps its name ``avx2``).

Exact for full 8-bit activations (int16 ``vpmaddwd`` products, no saturation), fused epilogues,
integer requantization bit-identical to the reference. Activations whose qparams clamp to
``qmax <= 127`` (``reduce_range``) take the faster 7-bit ``vpmaddubsw`` path, with the same results.
"""

from __future__ import annotations

from torch import Tensor

from eightbit.core.fixedpoint import Activation, activation_bounds, quantize_multiplier
from eightbit.core.qparams import QParams
from eightbit.kernels import native
from eightbit.kernels.base import (
    PreparedLinear,
    QuantizedWeight,
    bias_to_int32,
    check_input_qparams,
    register_availability,
    register_backend,
)

register_availability("avx2", native.is_available)


class _QParamsNumbers:
    """(scale, zero point, qmin, qmax) of uint8 qparams as Python numbers, checked; cached for
    the last qparams object (a module passes the same one every call, and reading 0-d tensors
    into Python costs about a microsecond each), refreshed if its tensors were changed in place.
    Inference tensors (made under ``torch.inference_mode``) keep no version counter, so their
    numbers are read on every call instead."""

    def __init__(self) -> None:
        self.key: tuple[int, int, int] | None = None
        self._qp: QParams | None = None  # holding it keeps its id unique
        self._numbers: tuple[float, int, int, int] = (1.0, 0, 0, 255)

    def __call__(self, qp: QParams) -> tuple[float, int, int, int]:
        if qp.scale.is_inference() or qp.zero_point.is_inference():
            return self._read(qp)
        key = (id(qp), qp.scale._version, qp.zero_point._version)
        if key != self.key:
            self._numbers = self._read(qp)
            self.key, self._qp = key, qp
        return self._numbers

    @staticmethod
    def _read(qp: QParams) -> tuple[float, int, int, int]:
        check_input_qparams(qp)
        return (float(qp.scale), int(qp.zero_point), qp.qmin, qp.qmax)


def _fused_input(qmin: int, qmax: int) -> bool:
    """Whether the kernels quantize this input themselves (full uint8, or the 7-bit path)."""
    return (qmin, qmax) == (0, 255) or qmax <= 127


@register_backend("avx2")
class Avx2Linear(PreparedLinear):
    """Static (fp32 or requantized output) and dynamic INT8 linear on packed weights."""

    def __init__(self, qweight: QuantizedWeight) -> None:
        super().__init__(qweight)
        self._packed = native.pack_weight(qweight.weight)
        self._plan = native.LinearPlan(self._packed, qweight.scale, qweight.bias)
        self._requant_cache: dict[tuple[object, ...], native.Requantization] = {}
        # (key, epilogue, the qparams themselves: holding them keeps their ids unique)
        self._requant_last: tuple[tuple[object, ...], native.Requantization, object] | None = None
        self._input_params = _QParamsNumbers()
        self._output_params = _QParamsNumbers()  # the uint8 a fused GELU epilogue writes
        self._out_scale_key: tuple[int, int, int] | None = None
        self._out_scale = qweight.scale

    def linear_fp32(self, x: Tensor, input_qp: QParams) -> Tensor:
        scale, zero_point, qmin, qmax = self._input_params(input_qp)
        if _fused_input(qmin, qmax):
            return self._plan.static_fp32(x, scale, zero_point, qmin, qmax)
        return self.linear_quantized_fp32(self.quantize_input(x, input_qp), input_qp)

    def quantize_input(self, x: Tensor, input_qp: QParams) -> Tensor:
        scale, zero_point, qmin, qmax = self._input_params(input_qp)
        return native.quantize_u8(x.contiguous(), scale, zero_point, qmin, qmax)

    def linear_quantized_fp32(self, x_q: Tensor, input_qp: QParams) -> Tensor:
        w = self.qweight
        _, zero_point, _, qmax = self._input_params(input_qp)
        if self._out_scale_key != self._input_params.key:  # S_x * S_w, once per input qparams
            self._out_scale = input_qp.scale * w.scale
            self._out_scale_key = self._input_params.key
        return native.linear_fp32_out(
            x_q, zero_point, self._packed, self._out_scale, w.bias, seven_bit=qmax <= 127
        )

    def _requantization(
        self, input_qp: QParams, output_qp: QParams, activation: Activation
    ) -> native.Requantization:
        """The checked requantization epilogue for these qparams, cached: for the last qparams
        objects (refreshed if their tensors were changed in place), so a call reads no tensor
        into Python, and by scale values and clamp for all others."""
        key = (
            id(input_qp), input_qp.scale._version, id(output_qp), output_qp.scale._version,
            output_qp.zero_point._version, activation,
        )  # fmt: skip
        last = self._requant_last
        if last is not None and last[0] == key:
            return last[1]
        lo, hi = activation_bounds(output_qp, activation)
        out_zp = int(output_qp.zero_point)
        by_value = (float(input_qp.scale), float(output_qp.scale), out_zp, lo, hi, output_qp.dtype)
        if by_value not in self._requant_cache:
            w = self.qweight
            fpm = quantize_multiplier(
                input_qp.scale.double() * w.scale.double() / output_qp.scale.double()
            )
            bias = bias_to_int32(w.bias, input_qp.scale, w.scale)
            self._requant_cache[by_value] = native.Requantization(
                bias, fpm.multiplier, fpm.shift, out_zp, lo, hi, output_qp.dtype
            )
        requant = self._requant_cache[by_value]
        self._requant_last = (key, requant, (input_qp, output_qp))
        return requant

    def linear_requant(
        self,
        x_q: Tensor,
        input_qp: QParams,
        output_qp: QParams,
        activation: Activation = "none",
    ) -> Tensor:
        _, zero_point, _, qmax = self._input_params(input_qp)
        requant = self._requantization(input_qp, output_qp, activation)
        # x_q is clamped to [qmin, qmax] by its producer: qmax <= 127 means 7-bit activations
        return native.linear_requant(x_q, zero_point, self._packed, requant, seven_bit=qmax <= 127)

    def linear_requant_from_fp32(
        self,
        x: Tensor,
        input_qp: QParams,
        output_qp: QParams,
        activation: Activation = "none",
    ) -> Tensor:
        scale, zero_point, qmin, qmax = self._input_params(input_qp)
        requant = self._requantization(input_qp, output_qp, activation)
        return native.linear_static_requant(x, scale, zero_point, qmin, qmax, self._packed, requant)

    def linear_dynamic(self, x: Tensor, per_token: bool = False) -> Tensor:
        return self._plan.dynamic(x, per_row=per_token)

    def linear_argmax(
        self,
        x: Tensor,
        input_qp: QParams | None,
        per_token: bool = False,
        skip: Tensor | None = None,
        bias_after: Tensor | None = None,
    ) -> Tensor:
        if input_qp is None:
            return self._plan.dynamic_argmax(x, per_token, skip=skip, bias_after=bias_after)
        scale, zero_point, qmin, qmax = self._input_params(input_qp)
        if not _fused_input(qmin, qmax):  # not fused in linear_fp32 either
            return super().linear_argmax(x, input_qp, per_token, skip, bias_after)
        return self._plan.static_argmax(x, scale, zero_point, qmin, qmax, skip, bias_after)

    def linear_gelu(
        self,
        x: Tensor,
        input_qp: QParams | None,
        output_qp: QParams | None = None,
        per_token: bool = False,
    ) -> Tensor:
        if input_qp is None:
            if output_qp is not None:
                return super().linear_gelu(x, input_qp, output_qp, per_token)
            return self._plan.dynamic_gelu(x, per_row=per_token)
        scale, zero_point, qmin, qmax = self._input_params(input_qp)
        if not _fused_input(qmin, qmax):  # not fused in linear_fp32 either
            return super().linear_gelu(x, input_qp, output_qp, per_token)
        out = None if output_qp is None else self._output_params(output_qp)
        return self._plan.static_gelu(x, scale, zero_point, qmin, qmax, out)
