"""The engine's own Marian encoder forward: once per batch, the decoder's cross-attention input.

Computes what ``MarianEncoder.forward`` of the same (FP32 or INT8) model computes, operation for
operation: the model's embedding modules (scale, then sinusoidal positions), the same bidirectional
padding mask, the same attention function the model is configured with (``sdpa`` or ``eager``,
called exactly as ``MarianAttention`` calls it), residuals and the model's LayerNorms. Two things
differ, neither changing a bit of the result (tested on FP32, static, dynamic, 7-bit and mixed
models): each layer's query, key and value come from one fused projection
(:func:`eightbit.engine.fuse.fuse_linears`), and a chained feed-forward block hands ``fc1``'s uint8
straight to ``fc2`` (:class:`eightbit.engine.fuse.IntegerFeedForward`) instead of dequantizing it
for ``fc2`` to quantize back.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from eightbit.engine.fuse import feed_forward, fuse_linears


@dataclass(frozen=True)
class EncoderLayerPlan:
    """One post-norm encoder layer: self-attention, then feed-forward."""

    attention: nn.Module  # the model's MarianAttention (read by the attention function)
    qkv: nn.Module  # (rows, d) -> (rows, 3d)
    out: nn.Module
    attention_norm: nn.LayerNorm
    feed_forward: nn.Module  # fc2(activation(fc1(x))), uint8 inside when chained
    final_norm: nn.LayerNorm


@dataclass(frozen=True)
class EncoderPlan:
    """What the encoder forward reads: embeddings, layers and the attention settings."""

    config: Any  # the model's config (mask construction and attention implementation)
    embed_tokens: nn.Module
    embed_scale: float
    positions: Tensor  # (max_positions, d) sinusoidal table
    layers: tuple[EncoderLayerPlan, ...]
    attention_fn: Callable[..., tuple[Tensor, Any]]
    heads: int
    d_model: int

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads


def _attention_function(config: Any) -> Callable[..., tuple[Tensor, Any]]:
    """The function ``MarianAttention`` looks up for ``config._attn_implementation``."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.marian.modeling_marian import eager_attention_forward

    return ALL_ATTENTION_FUNCTIONS.get_interface(
        config._attn_implementation, eager_attention_forward
    )


def _layer_plan(layer: nn.Module) -> EncoderLayerPlan:
    attention = layer.self_attn
    return EncoderLayerPlan(
        attention=attention,
        qkv=fuse_linears([attention.q_proj, attention.k_proj, attention.v_proj]),
        out=attention.out_proj,
        attention_norm=layer.self_attn_layer_norm,
        feed_forward=feed_forward(layer.fc1, layer.activation_fn, layer.fc2),
        final_norm=layer.final_layer_norm,
    )


def build_encoder_plan(model: Any) -> EncoderPlan:
    """The encoder plan of a ``MarianMTModel`` (fused layers hold copies of the weights)."""
    config = model.config
    encoder = model.get_encoder()
    return EncoderPlan(
        config=config,
        embed_tokens=encoder.embed_tokens,
        embed_scale=math.sqrt(config.d_model) if config.scale_embedding else 1.0,
        positions=encoder.embed_positions.weight.detach(),
        layers=tuple(_layer_plan(layer) for layer in encoder.layers),
        attention_fn=_attention_function(config),
        heads=config.encoder_attention_heads,
        d_model=config.d_model,
    )


def encode(plan: EncoderPlan, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Encoder states (batch, source_len, d_model), as ``MarianEncoder`` computes them."""
    from transformers.masking_utils import create_bidirectional_mask

    batch, source_len = input_ids.shape
    heads, head_dim, d_model = plan.heads, plan.head_dim, plan.d_model
    embedded = plan.embed_tokens(input_ids) * plan.embed_scale
    x = embedded + plan.positions[:source_len]  # (batch, S, d)
    # None for an all-ones mask (sdpa), boolean or additive otherwise: as the model's forward
    mask = create_bidirectional_mask(
        config=plan.config, inputs_embeds=embedded, attention_mask=attention_mask
    )
    x = x.view(batch * source_len, d_model)
    for layer in plan.layers:
        qkv = layer.qkv(x).view(batch, source_len, 3, heads, head_dim)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # (batch, H, S, hd)
        attended, _ = plan.attention_fn(
            layer.attention, q, k, v, mask, dropout=0.0, scaling=head_dim**-0.5
        )  # (batch, S, H, hd)
        x = layer.attention_norm(x + layer.out(attended.reshape(batch * source_len, d_model)))
        x = layer.final_norm(x + layer.feed_forward(x))
    return x.view(batch, source_len, d_model)
