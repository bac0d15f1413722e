"""Function-preserving activation outliers: the condition under which naive min/max fails.

Bhandare et al. (2019) report that min/max ranges break INT8 translation: outliers stretch a
tensor's range, the 256 levels get too coarse for the bulk of the values, and the decoder stops
emitting end-of-sentence. Large, long-trained Transformers grow such outlier channels on their own
(Bondarenko et al. 2021; Dettmers et al. 2022). A small model trained for a few hours may not, so
this module plants them without changing what the FP32 model computes:

    relu(s * z) == s * relu(z)  for s > 0

Scaling row ``c`` of a feed-forward block's first projection (weight and bias) by ``s`` and column
``c`` of its second projection by ``1/s`` leaves the FP32 output unchanged (up to float rounding)
while the hidden activation feeding the second projection gets one channel ``s`` times larger than
the rest: exactly the shape of range that min/max calibration handles badly and KL clips.
"""

from __future__ import annotations

import torch
from torch import nn

_POSITIVE_HOMOGENEOUS = (nn.ReLU,)


def feed_forward_pairs(model: nn.Module) -> list[tuple[str, nn.Linear, nn.Linear]]:
    """``(layer name, fc1, fc2)`` of every ReLU feed-forward block (Marian/BART layout)."""
    pairs = []
    for name, module in model.named_modules():
        fc1, fc2 = getattr(module, "fc1", None), getattr(module, "fc2", None)
        if isinstance(fc1, nn.Linear) and isinstance(fc2, nn.Linear):
            act = getattr(module, "activation_fn", None)
            if not isinstance(act, _POSITIVE_HOMOGENEOUS):
                raise ValueError(
                    f"{name}: activation {type(act).__name__} is not ReLU; planting outliers "
                    "would change the FP32 function"
                )
            pairs.append((name, fc1, fc2))
    return pairs


@torch.no_grad()
def plant_ffn_outliers(model: nn.Module, scale: float, channels: int = 1) -> list[str]:
    """Give every ReLU feed-forward block ``channels`` hidden units ``scale`` times larger.

    The units are the ones whose first-projection rows have the largest norm (deterministic).
    Modifies ``model`` in place and returns the names of the blocks changed. The FP32 outputs are
    unchanged up to float rounding; min/max ranges of the second projections' inputs grow by
    about ``scale``.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    pairs = feed_forward_pairs(model)
    if not pairs:
        raise ValueError("no ReLU feed-forward blocks (fc1/fc2) found in the model")
    for _, fc1, fc2 in pairs:
        rows = fc1.weight.norm(dim=1).topk(channels).indices  # (channels,)
        fc1.weight[rows] *= scale
        if fc1.bias is not None:
            fc1.bias[rows] *= scale
        fc2.weight[:, rows] /= scale
    return [name for name, _, _ in pairs]
