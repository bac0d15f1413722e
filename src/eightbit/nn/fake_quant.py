"""Fake-quantized Linear and Embedding: calibration (observe only) and QAT (observe + simulate).

Simulated quantization (Jacob et al. 2018 section 3; Q8BERT section 2): the forward pass quantizes
and dequantizes the weight (before use) and the input activation (where inference will quantize
it), in float; the backward pass uses the straight-through estimator. Activation ranges come from
an observer (an EMA of min/max during QAT, any calibration method during PTQ). Activation
quantization can start after a delay, once the ranges have settled. The bias is simulated as
INT32 with scale ``S_x * S_w`` so the converted INT8 layer computes the same function.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eightbit.calibration import Observer
from eightbit.core.ops import fake_quantize
from eightbit.core.qparams import QParams, qparams_from_range
from eightbit.nn.mask import current_mask
from eightbit.nn.weights import expanded_scale, weight_qparams


class FakeQuantLinear(nn.Module):
    """``nn.Linear`` whose input is observed and (optionally) fake-quantized.

    ``fake_quant=False`` makes it a pure calibration probe (outputs identical to FP32).
    """

    def __init__(
        self,
        linear: nn.Linear,
        input_observer: Observer,
        *,
        per_channel: bool,
        fake_quant: bool,
        act_quant_delay: int = 0,
        symmetric: bool = False,
        reduce_range: bool = False,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self.input_observer = input_observer
        self.per_channel = per_channel
        self.fake_quant = fake_quant
        self.observe = True
        self.act_quant_delay = act_quant_delay
        self.symmetric = symmetric
        self.reduce_range = reduce_range
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def weight_qparams(self) -> QParams:
        return weight_qparams(self.weight, self.per_channel)

    def input_qparams(self) -> QParams:
        """uint8 activation qparams from the observed range (symmetric: zero point 128, M=127)."""
        lo, hi = self.input_observer.range()
        return qparams_from_range(
            lo,
            hi,
            dtype=torch.uint8,
            symmetric=self.symmetric,
            narrow=self.symmetric,
            reduce_range=self.reduce_range,
        )

    def activation_quant_active(self) -> bool:
        return self.fake_quant and int(self.steps) >= self.act_quant_delay

    def forward(self, x: Tensor) -> Tensor:
        # calibration probes observe always; QAT layers only while training, so evaluating a
        # QAT model never moves its learned ranges toward the evaluation data
        if self.observe and (self.training or not self.fake_quant):
            self.input_observer(x.detach(), current_mask(x))
            if self.training:
                self.steps += 1
        if not self.fake_quant:
            return F.linear(x, self.weight, self.bias)
        w_qp = self.weight_qparams()
        weight = fake_quantize(self.weight, w_qp)
        if not self.activation_quant_active():
            return F.linear(x, weight, self.bias)
        x_qp = self.input_qparams()
        bias = self.bias
        if bias is not None:
            bias_scale = x_qp.scale * expanded_scale(w_qp, self.out_features)
            bias = bias + (torch.round(bias / bias_scale) * bias_scale - bias).detach()
        return F.linear(fake_quantize(x, x_qp), weight, bias)

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, per_channel={self.per_channel}, "
            f"fake_quant={self.fake_quant}, delay={self.act_quant_delay}"
        )


class FakeQuantEmbedding(nn.Module):
    """``nn.Embedding`` with fake-quantized int8 rows (weights only: a gather needs no range)."""

    def __init__(self, embedding: nn.Embedding, *, per_channel: bool = True) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = embedding.num_embeddings, embedding.embedding_dim
        self.padding_idx = embedding.padding_idx
        self.weight = embedding.weight
        self.per_channel = per_channel

    def weight_qparams(self) -> QParams:
        return weight_qparams(self.weight, self.per_channel)

    def forward(self, ids: Tensor) -> Tensor:
        weight = fake_quantize(self.weight, self.weight_qparams())
        return F.embedding(ids, weight, self.padding_idx)
