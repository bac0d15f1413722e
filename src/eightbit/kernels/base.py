"""The one kernel interface: a prepared INT8 linear layer and INT8 embedding gathers.

Every backend computes the same integer arithmetic (Jacob et al. 2018, eq. 7-9):
``acc[m, n] = sum_k (x_q[m, k] - Z_x) * w_q[n, k]`` in int32 (weights are symmetric, ``Z_w = 0``),
then one of three epilogues:

* ``fp32``: ``acc * (S_x * S_w[n]) + bias[n]`` (dequantized output), from fp32 input
  (``linear_fp32``, quantizing it first) or from uint8 input (``linear_quantized_fp32``),
* ``requant``: ``clamp(Z_out + M[n] * (acc + bias_q[n]))`` with the fixed-point multiplier
  ``M = S_x * S_w / S_out`` and the int32 bias ``bias_q = round(bias / (S_x * S_w))``,
* ``dynamic``: the input range is measured per call (per tensor or per token), output fp32.

Backends differ only in speed, except where documented (float epilogues may differ in the last
ulp; fbgemm needs 7-bit activations on AVX2 because ``vpmaddubsw`` saturates int16 pairs).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from eightbit.core.elementwise import gelu
from eightbit.core.fixedpoint import Activation
from eightbit.core.ops import quantize
from eightbit.core.qparams import QParams
from eightbit.errors import EightbitError


class KernelError(EightbitError):
    """A kernel was given tensors of the wrong dtype, shape or quantization scheme."""


@dataclass(frozen=True)
class QuantizedWeight:
    """A linear layer's weight in our plain format: int8 in [-127, 127] plus float32 scales.

    ``weight``: (out_features, in_features) int8; ``scale``: (out_features,) float32 (a
    per-tensor scale is stored expanded); ``bias``: (out_features,) float32 or None.
    """

    weight: Tensor
    scale: Tensor
    bias: Tensor | None = None

    def __post_init__(self) -> None:
        if self.weight.dtype != torch.int8 or self.weight.dim() != 2:
            raise KernelError(
                f"weight must be a 2-d int8 tensor, got {self.weight.dtype} "
                f"{tuple(self.weight.shape)}"
            )
        if self.weight.numel() and int(self.weight.min()) < -127:
            # Jacob et al.'s narrow range; the native M = 1 kernel's sign trick relies on it
            raise KernelError("weights must lie in [-127, 127] (narrow int8); got -128")
        n = self.weight.shape[0]
        if self.scale.shape != (n,) or self.scale.dtype != torch.float32:
            raise KernelError(
                f"scale must be float32 of shape ({n},), got {self.scale.dtype} "
                f"{tuple(self.scale.shape)}"
            )
        if self.bias is not None and self.bias.shape != (n,):
            raise KernelError(f"bias must have shape ({n},), got {tuple(self.bias.shape)}")

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]


def bias_to_int32(bias: Tensor | None, input_scale: Tensor, weight_scale: Tensor) -> Tensor:
    """INT32 bias with scale ``S_x * S_w`` and zero point 0 (Jacob et al. section 2.4)."""
    n = weight_scale.shape[0]
    if bias is None:
        return torch.zeros(n, dtype=torch.int32)
    bias_scale = input_scale.double() * weight_scale.double()
    q = torch.round(bias.double() / bias_scale)
    return torch.clamp(q, -(2**31), 2**31 - 1).to(torch.int32)


def check_input_qparams(qp: QParams, max_levels: int = 255) -> None:
    """Activations are per-tensor uint8 (a symmetric int8 range is mapped onto uint8 + 128)."""
    if qp.per_channel or qp.dtype != torch.uint8:
        raise KernelError("activation qparams must be per-tensor uint8")
    if qp.qmax - qp.qmin > max_levels:
        raise KernelError(
            f"this backend supports at most {max_levels} activation levels, got "
            f"[{qp.qmin}, {qp.qmax}]; calibrate with reduce_range=True"
        )


class PreparedLinear(ABC):
    """A weight packed once for one backend; the three epilogues of the module docstring."""

    def __init__(self, qweight: QuantizedWeight) -> None:
        self.qweight = qweight

    @abstractmethod
    def linear_fp32(self, x: Tensor, input_qp: QParams) -> Tensor:
        """Static: quantize fp32 ``x`` (M, K) with ``input_qp``, INT8 GEMM, fp32 (M, N)."""

    @abstractmethod
    def linear_quantized_fp32(self, x_q: Tensor, input_qp: QParams) -> Tensor:
        """Static, INT8 in, fp32 out: uint8 ``x_q`` (M, K) already quantized with ``input_qp``
        (values within its ``[qmin, qmax]``), INT8 GEMM, fp32 (M, N). Equals
        ``linear_fp32(x)`` for any ``x`` that quantizes to ``x_q``."""

    def quantize_input(self, x: Tensor, input_qp: QParams) -> Tensor:
        """fp32 ``x`` (any shape) -> the uint8 ``linear_requant`` / ``linear_quantized_fp32``
        take; identical on every backend (round half to even, then clamp)."""
        return quantize(x, input_qp)

    @abstractmethod
    def linear_requant(
        self,
        x_q: Tensor,
        input_qp: QParams,
        output_qp: QParams,
        activation: Activation = "none",
    ) -> Tensor:
        """Static INT8 in, INT8 out: uint8 ``x_q`` (M, K) -> ``output_qp.dtype`` (M, N)."""

    def linear_requant_from_fp32(
        self,
        x: Tensor,
        input_qp: QParams,
        output_qp: QParams,
        activation: Activation = "none",
    ) -> Tensor:
        """Static, fp32 in, INT8 out: ``linear_requant(quantize_input(x))``, which fast
        backends fuse (the first layer of an integer chain)."""
        return self.linear_requant(
            self.quantize_input(x, input_qp), input_qp, output_qp, activation
        )

    @abstractmethod
    def linear_dynamic(self, x: Tensor, per_token: bool = False) -> Tensor:
        """Dynamic: input range measured on ``x`` (per tensor or per row), fp32 (M, N)."""

    def linear_gelu(
        self,
        x: Tensor,
        input_qp: QParams | None,
        output_qp: QParams | None = None,
        per_token: bool = False,
    ) -> Tensor:
        """:func:`gelu` of ``linear_fp32(x, input_qp)`` (``linear_dynamic(x, per_token)`` when
        ``input_qp`` is None); with ``output_qp``, quantized to its uint8 levels (the input of the
        next static layer). Fast backends fuse both into the GEMM's epilogue."""
        out = (
            self.linear_dynamic(x, per_token) if input_qp is None else self.linear_fp32(x, input_qp)
        )
        out = gelu(out)
        return out if output_qp is None else quantize(out, output_qp)

    def linear_argmax(
        self,
        x: Tensor,
        input_qp: QParams | None,
        per_token: bool = False,
        skip: Tensor | None = None,
        bias_after: Tensor | None = None,
    ) -> Tensor:
        """int64 (M,): ``argmax(-1)`` of ``linear_fp32(x, input_qp)`` (``linear_dynamic(x,
        per_token)`` when ``input_qp`` is None) plus ``bias_after`` (N,) when given, the columns
        where ``skip`` (bool (N,)) is true filled with -inf first. Fast backends never write the
        (M, N) output (greedy decoding's output layer)."""
        out = (
            self.linear_dynamic(x, per_token) if input_qp is None else self.linear_fp32(x, input_qp)
        )
        if bias_after is not None:
            out = out + bias_after
        if skip is not None:
            out = out.masked_fill(skip, float("-inf"))
        return out.argmax(-1)


BackendFactory = Callable[[QuantizedWeight], PreparedLinear]
_BACKENDS: dict[str, BackendFactory] = {}


def register_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    """Class decorator: make a PreparedLinear implementation selectable by ``name``."""

    def register(factory: BackendFactory) -> BackendFactory:
        _BACKENDS[name] = factory
        return factory

    return register


def prepare_linear(qweight: QuantizedWeight, backend: str) -> PreparedLinear:
    """Pack ``qweight`` for ``backend`` ("reference", "fbgemm", "avx2")."""
    if backend not in _BACKENDS:
        raise KernelError(
            f"unknown kernel backend {backend!r}; expected one of {sorted(_BACKENDS)}"
        )
    return _BACKENDS[backend](qweight)


def resolve_backend(name: str) -> str:
    """``auto`` picks the native AVX2 kernel when it is available, else the reference."""
    if name != "auto":
        if name not in _BACKENDS:
            raise KernelError(f"unknown kernel backend {name!r}; expected one of {backend_names()}")
        return name
    return (
        "avx2" if "avx2" in _BACKENDS and _AVAILABLE.get("avx2", lambda: False)() else "reference"
    )


_AVAILABLE: dict[str, Callable[[], bool]] = {}


def register_availability(name: str, check: Callable[[], bool]) -> None:
    """Backends that may not work on every machine say so here (checked lazily)."""
    _AVAILABLE[name] = check


def backend_names() -> list[str]:
    return sorted(_BACKENDS)


def embedding_gather(weight_q: Tensor, row_scale: Tensor, ids: Tensor) -> Tensor:
    """INT8 embedding lookup: gather int8 rows (4x less memory traffic), dequantize after.

    ``weight_q``: (vocab, dim) int8; ``row_scale``: (vocab,) float32; ``ids``: any int shape.
    Returns ``ids.shape + (dim,)`` float32. Identical on every backend (pure data movement).
    """
    flat = ids.reshape(-1)
    rows = weight_q.index_select(0, flat)  # (n, dim) int8
    scales = row_scale.index_select(0, flat).unsqueeze(1)  # (n, 1)
    return (rows.float() * scales).reshape(*ids.shape, weight_q.shape[1])
