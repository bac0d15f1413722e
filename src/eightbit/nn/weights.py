"""How weights are quantized: symmetric int8 in [-127, 127], per output channel or per tensor.

Jacob et al. restrict weights to [-127, 127]; Q8BERT takes ``S_W = 127 / max|W|`` per tensor. A
per-channel (per output row) scale is the finer option and the default for post-training
quantization; it also gives embeddings one scale per row.
"""

from __future__ import annotations

import torch
from torch import Tensor

from eightbit.core.qparams import QParams, qparams_from_range


def weight_qparams(weight: Tensor, per_channel: bool) -> QParams:
    """Symmetric narrow int8 qparams of a 2-d weight, one scale per row if ``per_channel``."""
    w = weight.detach()
    if per_channel:
        amax = w.abs().amax(dim=1)
        return qparams_from_range(
            -amax, amax, dtype=torch.int8, symmetric=True, narrow=True, axis=0
        )
    amax = w.abs().max()
    return qparams_from_range(-amax, amax, dtype=torch.int8, symmetric=True, narrow=True)


def expanded_scale(qp: QParams, rows: int) -> Tensor:
    """The weight scale as a (rows,) float32 vector, whether per-tensor or per-channel."""
    return qp.scale.expand(rows).contiguous() if qp.axis is None else qp.scale.contiguous()
