"""Quantize, dequantize and fake-quantize (quantize-dequantize with a straight-through gradient).

Rounding is round-half-to-even (``torch.round``), the IEEE default used by fbgemm and MLAS, so the
reference path and the fast kernels quantize activations identically.
"""

from __future__ import annotations

import torch
from torch import Tensor

from eightbit.core.qparams import QParams


def _scaled(x: Tensor, qp: QParams) -> Tensor:
    scale, zero_point = qp.broadcast_to(x)
    return torch.clamp(torch.round(x / scale) + zero_point, qp.qmin, qp.qmax)


def quantize(x: Tensor, qp: QParams) -> Tensor:
    """``clamp(round(x / scale) + zero_point, qmin, qmax)`` as a tensor of ``qp.dtype``."""
    return _scaled(x.float(), qp).to(qp.dtype)


def dequantize(q: Tensor, qp: QParams) -> Tensor:
    """``scale * (q - zero_point)`` in float32."""
    scale, zero_point = qp.broadcast_to(q)
    return (q.to(torch.int32) - zero_point).float() * scale


class _FakeQuantize(torch.autograd.Function):
    """Quantize-dequantize forward; straight-through estimator backward.

    The gradient of ``round`` is taken as 1 (Bengio et al.'s STE, used by Jacob et al. and Q8BERT);
    values clamped outside the representable range get zero gradient, as clipping does.
    """

    @staticmethod
    def forward(ctx, x: Tensor, qp: QParams) -> Tensor:  # type: ignore[override]
        scale, zero_point = qp.broadcast_to(x)
        unclamped = torch.round(x / scale) + zero_point
        ctx.save_for_backward((unclamped >= qp.qmin) & (unclamped <= qp.qmax))
        q = torch.clamp(unclamped, qp.qmin, qp.qmax)
        return ((q - zero_point) * scale).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (inside,) = ctx.saved_tensors
        return grad_output * inside, None


def fake_quantize(x: Tensor, qp: QParams) -> Tensor:
    """``dequantize(quantize(x))`` in float, differentiable with the straight-through estimator."""
    return _FakeQuantize.apply(x, qp)
