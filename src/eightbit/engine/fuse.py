"""Fuse linear layers that read the same input into one wider layer (one GEMM, one quantize).

Attention's Q, K and V projections (and cross-attention's K and V) all read one tensor. Stacking
their weights along the output dimension gives one GEMM instead of three; for static INT8 layers
the input is also quantized once instead of three times. Every output column is computed exactly
as before (per-channel weight scales and int32 accumulation are column-wise), so fusing never
changes a result; layers that cannot be fused exactly are left separate.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

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
    if first.activation != "none" or any(hasattr(m, "output_scale") for m in layers):
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
