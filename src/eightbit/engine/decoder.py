"""One incremental decoder step and the per-batch setup it needs (Marian: post-norm layers).

The encoder runs once per batch (:mod:`eightbit.engine.encoder`); each step then embeds one new
token per row, attends over the cached keys/values with SDPA (:class:`DecoderCache`), or with
eightbit's decode attention kernel when the model is set up for it (:class:`NativeDecoderCache`,
the kernel ``generate`` then runs too), and returns next-token logits.
"""

from __future__ import annotations

import torch
from torch import Tensor

from eightbit.engine import encoder
from eightbit.engine.cache import DecoderCache
from eightbit.engine.native_cache import NativeDecoderCache, workspace
from eightbit.engine.plan import DecoderPlan


def encode(plan: DecoderPlan, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Encoder states (batch, source_len, d_model)."""
    return encoder.encode(plan.encoder, input_ids, attention_mask)


def new_cache(
    plan: DecoderPlan,
    encoder_states: Tensor,
    attention_mask: Tensor,
    max_steps: int,
    beams: int = 1,
) -> DecoderCache | NativeDecoderCache:
    """Cross-attention K/V for every layer (computed once, stored once per sentence) and an
    empty self-attention cache for ``batch * beams`` rows (a sentence's beams are adjacent)."""
    batch, source_len = encoder_states.shape[:2]
    heads, head_dim, layers = plan.heads, plan.head_dim, len(plan.layers)
    kv = torch.stack([layer.cross_kv(encoder_states) for layer in plan.layers])  # (L, B, S, 2d)
    kv = kv.view(layers, batch, source_len, 2, heads, head_dim).permute(0, 3, 1, 4, 2, 5)
    mask = torch.zeros(batch, source_len, dtype=encoder_states.dtype)
    rows = batch * beams
    if plan.native_attention:  # -inf: the value HF's boolean masks become for the kernel
        mask.masked_fill_(attention_mask == 0, float("-inf"))
        self_kv = workspace("self_kv", (layers, 2, max_steps, rows, heads, head_dim))
        cross_kv = workspace("cross_kv", tuple(kv.shape)).copy_(kv)
        return NativeDecoderCache(self_kv, cross_kv, mask, beams)
    mask.masked_fill_(attention_mask == 0, torch.finfo(mask.dtype).min)
    self_kv = encoder_states.new_empty((layers, 2, rows, heads, max_steps, head_dim))
    return DecoderCache(self_kv, kv.contiguous(), mask, beams)


def step(plan: DecoderPlan, cache: DecoderCache | NativeDecoderCache, tokens: Tensor) -> Tensor:
    """Logits (rows, vocab) for the next token after ``tokens`` (rows,); advances ``cache``."""
    return output_logits(plan, hidden_step(plan, cache, tokens))


def hidden_step(
    plan: DecoderPlan, cache: DecoderCache | NativeDecoderCache, tokens: Tensor
) -> Tensor:
    """The decoder's last hidden states (rows, d_model) after ``tokens`` (rows,), the input of
    the output layer; advances ``cache``."""
    rows = tokens.shape[0]
    heads, head_dim = plan.heads, plan.head_dim
    x = plan.embed_tokens(tokens) * plan.embed_scale + plan.positions[cache.length]  # (rows, d)
    for index, layer in enumerate(plan.layers):
        qkv = layer.self_qkv(x).view(rows, 3, heads, head_dim)
        x = layer.self_norm(x + layer.self_out(cache.self_attention(index, qkv)))
        attended = cache.cross_attention(index, layer.cross_q(x).view(rows, heads, head_dim))
        x = layer.cross_norm(x + layer.cross_out(attended))
        x = layer.final_norm(x + layer.feed_forward(x))
    cache.advance()
    return x


def output_logits(plan: DecoderPlan, x: Tensor) -> Tensor:
    """Logits (rows, vocab) of the hidden states ``x`` (rows, d_model)."""
    logits = plan.lm_head(x)
    if plan.logits_bias is not None:
        logits.add_(plan.logits_bias)  # in place, a fresh tensor: no second (rows, vocab)
    return logits
