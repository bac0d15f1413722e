"""Graph rewrites from Jacob et al. 2018 (section 3.2) for models that have them.

* :func:`fold_batchnorm`: fold an inference-mode BatchNorm into the preceding Linear/Conv, so the
  folded weight is what gets quantized.
* :func:`fuse_activations`: after conversion, a ReLU/ReLU6 that follows a static INT8 Linear
  becomes part of the requantization clamp, and consecutive INT8 layers of an ``nn.Sequential``
  are chained in uint8 (:func:`run_integer`), with no dequantize/quantize in between.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from eightbit.core.ops import dequantize
from eightbit.nn import QuantLinear

_FOLDABLE = ((nn.Linear, nn.BatchNorm1d), (nn.Conv1d, nn.BatchNorm1d), (nn.Conv2d, nn.BatchNorm2d))
_ACTIVATIONS = {nn.ReLU: "relu", nn.ReLU6: "relu6"}


def _fold_pair(layer: nn.Module, bn: nn.Module) -> None:
    """``W' = W * g / sqrt(var + eps)``, ``b' = (b - mean) * g / sqrt(var + eps) + beta``."""
    factor = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)  # (out,)
    shape = (-1,) + (1,) * (layer.weight.dim() - 1)
    with torch.no_grad():
        layer.weight.mul_(factor.reshape(shape))
        bias = layer.bias.detach() if layer.bias is not None else torch.zeros_like(factor)
        new_bias = (bias - bn.running_mean) * factor + bn.bias.detach()
        if layer.bias is None:
            layer.bias = nn.Parameter(new_bias)
        else:
            layer.bias.copy_(new_bias)


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm that directly follows a Linear/Conv in an ``nn.Sequential``
    (in place; the BatchNorm becomes Identity). Returns the number of folds."""
    folds = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            layer, bn = seq[i], seq[i + 1]
            if any(type(layer) is lt and type(bn) is bt for lt, bt in _FOLDABLE):
                _fold_pair(layer, bn)
                seq[i + 1] = nn.Identity()
                folds += 1
    return folds


def fuse_activations(model: nn.Module) -> int:
    """Fuse ReLU/ReLU6 after static QuantLinears into their clamp and chain consecutive static
    QuantLinears of each ``nn.Sequential`` in uint8. Returns the number of fused activations."""
    fused = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        positions = [i for i, m in enumerate(seq) if not isinstance(m, nn.Identity)]
        for here, after in itertools.pairwise(positions):
            layer, act = seq[here], _ACTIVATIONS.get(type(seq[after]))
            if isinstance(layer, QuantLinear) and layer.mode == "static" and act:
                layer.activation = act  # type: ignore[assignment]
                seq[after] = nn.Identity()
                fused += 1
        chain = [m for m in seq if not isinstance(m, nn.Identity)]
        for prev, nxt in itertools.pairwise(chain):
            if all(isinstance(m, QuantLinear) and m.mode == "static" for m in (prev, nxt)):
                prev.set_output_qparams(nxt.input_qparams)
    return fused


def run_integer(seq: nn.Sequential, x: Tensor) -> Tensor:
    """Run a fused Sequential of static QuantLinears integer-only: quantize once, uint8 between
    layers (fixed-point requantization, fused clamps), dequantize once at the end."""
    layers = [m for m in seq if not isinstance(m, nn.Identity)]
    if not layers or not all(isinstance(m, QuantLinear) for m in layers):
        raise ValueError("run_integer needs a Sequential of static QuantLinear layers")
    q = layers[0].quantize_input(x)
    for layer in layers[:-1]:
        q = layer.forward_quantized(q)
    last = layers[-1]
    if not hasattr(last, "output_scale"):
        return last.kernel().linear_fp32(dequantize(q, last.input_qparams), last.input_qparams)
    return dequantize(last.forward_quantized(q), last.output_qparams)
