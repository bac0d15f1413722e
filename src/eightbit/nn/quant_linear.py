"""The converted INT8 Linear: int8 weights, int32 bias, static or dynamic activation ranges.

Holds only plain tensors (int8 weight, float32 scales, int32 bias), so it saves to safetensors and
runs on any kernel backend. ``forward`` takes and returns fp32 (the drop-in path);
``forward_quantized`` takes uint8 and returns uint8 so consecutive quantized ops need no
dequantize/quantize pair in between (Bhandare et al. 2019, section 4), and
``forward_from_quantized`` takes uint8 and returns fp32 (the end of such a chain).

A static layer with output qparams computes its uint8 output (fixed-point requantization, fused
ReLU clamp) on every path; ``forward`` then returns those levels dequantized, which the next
layer's quantize maps back to exactly the same uint8, so the drop-in fp32 path and an integer
chain give identical results.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from eightbit.core.fixedpoint import Activation
from eightbit.core.ops import dequantize, quantize
from eightbit.core.qparams import QParams, qparams_from_range
from eightbit.kernels import PreparedLinear, QuantizedWeight, bias_to_int32, prepare_linear
from eightbit.nn.weights import expanded_scale

Mode = Literal["static", "dynamic"]


def _qparams_buffers(qp: QParams) -> dict[str, Tensor]:
    return {
        "scale": qp.scale.reshape(()).float(),
        "zero_point": qp.zero_point.reshape(()).int(),
        "qrange": torch.tensor([qp.qmin, qp.qmax], dtype=torch.int32),
    }


def _qparams_from_buffers(scale: Tensor, zero_point: Tensor, qrange: Tensor) -> QParams:
    qmin, qmax = (int(v) for v in qrange)
    return QParams(scale, zero_point, torch.uint8, qmin, qmax)


class QuantLinear(nn.Module):
    """INT8 linear layer; build it with :meth:`from_float`."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        mode: Mode,
        has_bias: bool,
        per_token: bool = False,
        has_output_qparams: bool = False,
        backend: str = "reference",
    ) -> None:
        super().__init__()
        if mode not in ("static", "dynamic"):
            raise ValueError(f"mode must be 'static' or 'dynamic', got {mode!r}")
        self.in_features, self.out_features = in_features, out_features
        self.mode: Mode = mode
        self.per_token = per_token
        self.backend = backend
        self.activation: Activation = "none"
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features) if has_bias else None)
        if mode == "static":
            self.register_buffer("bias_int32", torch.zeros(out_features, dtype=torch.int32))
            for name, value in _qparams_buffers(qparams_from_range(-1.0, 1.0)).items():
                self.register_buffer(f"input_{name}", value)
        if has_output_qparams:
            for name, value in _qparams_buffers(qparams_from_range(-1.0, 1.0)).items():
                self.register_buffer(f"output_{name}", value)
        self._kernel: PreparedLinear | None = None
        self._input_qp: QParams | None = None
        self._output_qp: QParams | None = None

    @classmethod
    def from_float(
        cls,
        linear: nn.Module,
        weight_qp: QParams,
        *,
        input_qp: QParams | None,
        output_qp: QParams | None = None,
        per_token: bool = False,
        backend: str = "reference",
    ) -> QuantLinear:
        """Quantize a float linear (``weight``, ``bias``); ``input_qp=None`` means dynamic."""
        weight, bias = linear.weight.detach(), getattr(linear, "bias", None)
        out_features, in_features = weight.shape
        module = cls(
            in_features,
            out_features,
            mode="dynamic" if input_qp is None else "static",
            has_bias=bias is not None,
            per_token=per_token,
            has_output_qparams=output_qp is not None,
            backend=backend,
        )
        module.weight.copy_(quantize(weight, weight_qp))
        module.weight_scale.copy_(expanded_scale(weight_qp, out_features))
        if bias is not None:
            module.bias.copy_(bias.detach())
        if input_qp is not None:
            module.set_input_qparams(input_qp)
        if output_qp is not None:
            module.set_output_qparams(output_qp)
        return module

    def set_output_qparams(self, output_qp: QParams) -> None:
        """Give the layer an INT8 output (for :meth:`forward_quantized`; ``forward`` then
        returns the dequantized uint8 output)."""
        for name, value in _qparams_buffers(output_qp).items():
            if hasattr(self, f"output_{name}"):
                getattr(self, f"output_{name}").copy_(value)
            else:
                self.register_buffer(f"output_{name}", value.clone())
        self._output_qp = None

    def clear_output_qparams(self) -> None:
        """Back to an fp32 output (the float epilogue): drop the output qparams."""
        for name in _qparams_buffers(qparams_from_range(-1.0, 1.0)):
            self._buffers.pop(f"output_{name}", None)
        self._output_qp = None

    @property
    def has_output_qparams(self) -> bool:
        return "output_scale" in self._buffers

    def set_input_qparams(self, input_qp: QParams) -> None:
        for name, value in _qparams_buffers(input_qp).items():
            getattr(self, f"input_{name}").copy_(value)
        self.bias_int32.copy_(bias_to_int32(self.bias, self.input_scale, self.weight_scale))
        self._kernel = None
        self._input_qp = None

    @property
    def input_qparams(self) -> QParams:
        # built once per layer, not per call: a decoder step is only tens of microseconds
        if self._input_qp is None:
            self._input_qp = _qparams_from_buffers(
                self.input_scale, self.input_zero_point, self.input_qrange
            )
        return self._input_qp

    @property
    def output_qparams(self) -> QParams:
        if self._output_qp is None:
            self._output_qp = _qparams_from_buffers(
                self.output_scale, self.output_zero_point, self.output_qrange
            )
        return self._output_qp

    def kernel(self) -> PreparedLinear:
        """The weight packed for ``self.backend`` (packed once, on first use)."""
        if self._kernel is None:
            bias = self.bias
            if self.mode == "static" and bias is not None:
                # the INT32 bias, dequantized: the fp32 epilogue adds exactly what requant adds
                bias = (
                    self.bias_int32.double()
                    * self.input_scale.double()
                    * self.weight_scale.double()
                ).float()
            qweight = QuantizedWeight(self.weight, self.weight_scale, bias)
            self._kernel = prepare_linear(qweight, self.backend)
        return self._kernel

    def set_backend(self, backend: str) -> None:
        self.backend = backend
        self._kernel = None

    def _float_rows(self, x: Tensor) -> tuple[Tensor, bool]:
        """(M, K) contiguous float32 rows of ``x``, and whether ``x`` already was exactly that.

        2-d contiguous float32 input (the common case) goes in and out without reshapes: each
        reshape/float/contiguous is a dispatch of about 0.4 us, a decoder step only tens of us."""
        if x.dim() == 2 and x.dtype is torch.float32 and x.is_contiguous():
            return x, True
        return x.reshape(-1, self.in_features).float().contiguous(), False

    def forward(self, x: Tensor) -> Tensor:
        rows, flat = self._float_rows(x)  # (M, K)
        if self.mode == "dynamic":
            out = self.kernel().linear_dynamic(rows, self.per_token)
        elif self.has_output_qparams:  # the same uint8 an integer chain computes, dequantized
            out = dequantize(self._requantized(rows), self.output_qparams)
        else:
            out = self.kernel().linear_fp32(rows, self.input_qparams)
        if self.activation != "none" and not self.has_output_qparams:  # fused, in float here
            out = out.clamp(min=0.0, max=6.0 if self.activation == "relu6" else None)
        return out if flat else out.reshape(*x.shape[:-1], self.out_features)

    def forward_argmax(
        self, x: Tensor, skip: Tensor | None = None, bias_after: Tensor | None = None
    ) -> Tensor:
        """``(forward(x) + bias_after).argmax(-1)`` over (M, K) ``x`` (``bias_after``: float32
        (N,), or None), with the columns where ``skip`` (bool (N,)) is true filled with -inf
        first: the same indices, without writing the (M, N) output where the backend fuses the
        argmax into its GEMM (greedy decoding)."""
        if self.has_output_qparams or self.activation != "none":
            raise ValueError("forward_argmax needs a layer with an fp32 output and no activation")
        rows, _ = self._float_rows(x)
        input_qp = self.input_qparams if self.mode == "static" else None
        return self.kernel().linear_argmax(rows, input_qp, self.per_token, skip, bias_after)

    def forward_gelu(self, x: Tensor, output_qp: QParams | None = None) -> Tensor:
        """``gelu(forward(x))`` with eightbit's exact GELU (:func:`eightbit.kernels.gelu`) fused
        into the kernel's epilogue; uint8 quantized with ``output_qp`` when given (the input
        qparams of the static layer that reads it, then :meth:`forward_from_quantized`)."""
        if self.has_output_qparams or self.activation != "none":
            raise ValueError("forward_gelu needs a layer with an fp32 output and no activation")
        rows, flat = self._float_rows(x)
        input_qp = self.input_qparams if self.mode == "static" else None
        out = self.kernel().linear_gelu(rows, input_qp, output_qp, self.per_token)
        return out if flat else out.reshape(*x.shape[:-1], self.out_features)

    def quantize_input(self, x: Tensor) -> Tensor:
        """fp32 -> the uint8 input this layer expects (the one quantize step of an INT8 chain)."""
        return self.kernel().quantize_input(x.float(), self.input_qparams)

    def forward_quantized(self, x_q: Tensor) -> Tensor:
        """uint8 in (input qparams), uint8 out (output qparams): fully integer."""
        if self.mode != "static" or not self.has_output_qparams:
            raise ValueError("forward_quantized needs a static layer with output qparams")
        rows = x_q.reshape(-1, self.in_features).contiguous()
        out = self.kernel().linear_requant(
            rows, self.input_qparams, self.output_qparams, self.activation
        )
        return out.reshape(*x_q.shape[:-1], self.out_features)

    def forward_requantized(self, x: Tensor) -> Tensor:
        """fp32 in, uint8 out (output qparams): the first layer of an integer chain (its
        quantize fused into the kernel where the backend can)."""
        if self.mode != "static" or not self.has_output_qparams:
            raise ValueError("forward_requantized needs a static layer with output qparams")
        rows, flat = self._float_rows(x)
        out = self._requantized(rows)
        return out if flat else out.reshape(*x.shape[:-1], self.out_features)

    def _requantized(self, rows: Tensor) -> Tensor:
        return self.kernel().linear_requant_from_fp32(
            rows, self.input_qparams, self.output_qparams, self.activation
        )

    def forward_from_quantized(self, x_q: Tensor) -> Tensor:
        """uint8 in (input qparams), fp32 out: the last layer of an integer chain. Equals
        ``forward(x)`` for any ``x`` that quantizes to ``x_q``."""
        if self.mode != "static":
            raise ValueError("forward_from_quantized needs a static layer")
        rows = x_q.reshape(-1, self.in_features).contiguous()
        out = self.kernel().linear_quantized_fp32(rows, self.input_qparams)
        return out.reshape(*x_q.shape[:-1], self.out_features)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._kernel = None  # buffers changed: repack on next use
        self._input_qp = self._output_qp = None

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, mode={self.mode}, "
            f"backend={self.backend}"
        )
