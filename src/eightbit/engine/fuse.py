"""Fuse linear layers that read the same input into one wider layer (one GEMM, one quantize),
and run chained feed-forward blocks in uint8.

Attention's Q, K and V projections (and cross-attention's K and V) all read one tensor. Stacking
their weights along the output dimension gives one GEMM instead of three; for static INT8 layers
the input is also quantized once instead of three times. Every output column is computed exactly
as before (per-channel weight scales and int32 accumulation are column-wise), so fusing never
changes a result; layers that cannot be fused exactly are left separate.

A feed-forward block chained by :func:`eightbit.fusion.chain_feed_forward` runs as one quantize,
``fc1``'s requantization to uint8 (ReLU in its clamp) and ``fc2``'s fp32 epilogue on that uint8:
the very values the model's own modules compute, without their dequantize/quantize in between.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from eightbit.fusion import is_chained
from eightbit.nn import QuantLinear


class SplitLinears(nn.Module):
    """Fallback when fusing is not exact: run each layer and concatenate the outputs."""

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([layer(x) for layer in self.layers], dim=-1)


def _bias_or_zeros(layer: nn.Module) -> Tensor:
    bias = getattr(layer, "bias", None)
    return bias.detach() if bias is not None else torch.zeros(layer.out_features)


def _fuse_float(layers: Sequence[nn.Linear]) -> nn.Linear:
    fused = nn.Linear(layers[0].in_features, sum(m.out_features for m in layers))
    with torch.no_grad():
        fused.weight.copy_(torch.cat([m.weight.detach() for m in layers]))
        fused.bias.copy_(torch.cat([_bias_or_zeros(m) for m in layers]))
    return fused.eval()


def _same_input_quantization(layers: Sequence[QuantLinear]) -> bool:
    first = layers[0]
    keys = ("mode", "per_token", "backend", "activation")
    if any(getattr(m, k) != getattr(first, k) for m in layers for k in keys):
        return False
    if first.activation != "none" or any(m.has_output_qparams for m in layers):
        return False
    if first.mode == "dynamic":
        return True  # the range is measured on the shared input: equal by construction
    names = ("input_scale", "input_zero_point", "input_qrange")
    return all(torch.equal(getattr(m, n), getattr(first, n)) for m in layers for n in names)


def _fuse_quantized(layers: Sequence[QuantLinear]) -> QuantLinear:
    first = layers[0]
    fused = QuantLinear(
        first.in_features,
        sum(m.out_features for m in layers),
        mode=first.mode,
        has_bias=True,
        per_token=first.per_token,
        backend=first.backend,
    )
    fused.weight = torch.cat([m.weight for m in layers])
    fused.weight_scale = torch.cat([m.weight_scale for m in layers])
    fused.bias = torch.cat([_bias_or_zeros(m) for m in layers])
    if first.mode == "static":
        fused.bias_int32 = torch.cat([m.bias_int32 for m in layers])
        for name in ("input_scale", "input_zero_point", "input_qrange"):
            setattr(fused, name, getattr(first, name).clone())
    return fused


def fuse_linears(layers: Sequence[nn.Module]) -> nn.Module:
    """One layer computing ``cat([layer(x) for layer in layers], -1)``, fused where exact."""
    if all(type(m) is nn.Linear for m in layers):
        return _fuse_float(layers)  # type: ignore[arg-type]
    if all(isinstance(m, QuantLinear) for m in layers) and _same_input_quantization(layers):  # type: ignore[arg-type]
        return _fuse_quantized(layers)  # type: ignore[arg-type]
    return SplitLinears(layers)


class FeedForward(nn.Module):
    """``fc2(activation(fc1(x)))``, the model's own modules."""

    def __init__(self, fc1: nn.Module, activation: nn.Module, fc2: nn.Module) -> None:
        super().__init__()
        self.fc1, self.activation, self.fc2 = fc1, activation, fc2

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.activation(self.fc1(x)))


class IntegerFeedForward(nn.Module):
    """A chained INT8 block: fp32 in, uint8 between ``fc1`` and ``fc2``, fp32 out."""

    def __init__(self, fc1: QuantLinear, fc2: QuantLinear) -> None:
        super().__init__()
        self.fc1, self.fc2 = fc1, fc2

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.fc1.forward_requantized(x)  # uint8, ReLU in the clamp
        return self.fc2.forward_from_quantized(hidden)


def feed_forward(fc1: nn.Module, activation: nn.Module, fc2: nn.Module) -> nn.Module:
    """The block ``fc2(activation(fc1(x)))``, in uint8 between the projections when chained."""
    if is_chained(fc1, fc2):  # fc1's clamp holds the ReLU
        return IntegerFeedForward(fc1, fc2)  # type: ignore[arg-type]
    return FeedForward(fc1, activation, fc2)
