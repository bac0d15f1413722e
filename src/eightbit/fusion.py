"""Graph rewrites from Jacob et al. 2018 (section 3.2) for models that have them.

* :func:`fold_batchnorm`: fold an inference-mode BatchNorm into the preceding Linear/Conv, so the
  folded weight is what gets quantized.
* :func:`fuse_activations`: after conversion, a ReLU/ReLU6 that follows a static INT8 Linear
  becomes part of the requantization clamp, and consecutive INT8 layers of an ``nn.Sequential``
  are chained in uint8 (:func:`run_integer`), with no dequantize/quantize in between.
* :func:`chain_feed_forward`: the same for the ``fc1 -> ReLU -> fc2`` feed-forward blocks of
  Transformer layers (Marian/BART layout), which :func:`eightbit.convert` applies.
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


def _static_int8(module: object) -> bool:
    """A static (calibrated) INT8 linear: the only kind with a requantized uint8 output."""
    return isinstance(module, QuantLinear) and module.mode == "static"


def fuse_activations(model: nn.Module) -> int:
    """Fuse ReLU/ReLU6 after static QuantLinears into their clamp and chain consecutive static
    QuantLinears of each ``nn.Sequential`` in uint8. Returns the number of fused activations."""
    fused = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        positions = [i for i, m in enumerate(seq) if not isinstance(m, nn.Identity)]
        for here, after in itertools.pairwise(positions):
            layer, act = seq[here], _ACTIVATIONS.get(type(seq[after]))
            if _static_int8(layer) and act:
                layer.activation = act  # type: ignore[assignment]
                seq[after] = nn.Identity()
                fused += 1
        chain = [m for m in seq if not isinstance(m, nn.Identity)]
        for prev, nxt in itertools.pairwise(chain):
            if _static_int8(prev) and _static_int8(nxt):
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
    if not last.has_output_qparams:
        return last.forward_from_quantized(q)
    return dequantize(last.forward_quantized(q), last.output_qparams)


def _chainable(fc1: object, activation: object, fc2: object) -> bool:
    return _static_int8(fc1) and _static_int8(fc2) and type(activation) is nn.ReLU


def chain_feed_forward(model: nn.Module, enabled: bool = True) -> int:
    """Chain every ``fc1 -> ReLU -> fc2`` block (modules with ``fc1``, ``activation_fn`` and
    ``fc2``, as in Marian/BART layers) whose two projections are static INT8 in uint8.

    ``fc1`` gets ``fc2``'s input qparams as its output qparams and ReLU in its clamp: it
    requantizes straight to the uint8 ``fc2`` reads (``forward`` returns those levels dequantized,
    which ``fc2`` quantizes back exactly; the eightbit engine hands over the uint8 itself).
    Blocks that no longer qualify (an ``fc2`` swapped back to FP32), or every block with
    ``enabled=False``, are unchained (fc1 back to its fp32 epilogue), so this can be rerun after
    any module swap. Returns the number of chained blocks."""
    chained = 0
    for module in model.modules():
        fc1, fc2 = getattr(module, "fc1", None), getattr(module, "fc2", None)
        if not isinstance(fc1, QuantLinear):
            continue
        if enabled and _chainable(fc1, getattr(module, "activation_fn", None), fc2):
            fc1.activation = "relu"
            fc1.set_output_qparams(fc2.input_qparams)
            chained += 1
        elif fc1.has_output_qparams:
            fc1.activation = "none"
            fc1.clear_output_qparams()
    return chained


def is_chained(fc1: nn.Module, fc2: nn.Module) -> bool:
    """Whether ``fc1`` requantizes to exactly the uint8 input ``fc2`` expects."""
    if not (isinstance(fc1, QuantLinear) and isinstance(fc2, QuantLinear)):
        return False
    if not (fc1.has_output_qparams and fc2.mode == "static" and fc1.activation == "relu"):
        return False
    names = ("scale", "zero_point", "qrange")
    return all(torch.equal(getattr(fc1, f"output_{n}"), getattr(fc2, f"input_{n}")) for n in names)
