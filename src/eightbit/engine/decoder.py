"""One incremental decoder step and the per-batch setup it needs (Marian: post-norm layers).

The encoder runs once per batch (:mod:`eightbit.engine.encoder`); each step then embeds one new
token per row, attends over the cached keys/values with SDPA (:class:`DecoderCache`), or with
eightbit's decode attention kernel when the model is set up for it (:class:`NativeDecoderCache`,
the kernel ``generate`` then runs too), and returns next-token logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


def cross_attention(q: Tensor, cache: DecoderCache, layer: int) -> Tensor:
    """Cross-attention (rows, H, hd) -> (rows, H * hd) over K/V stored once per sentence.

    Every row stays a query of its own over its sentence's keys (so the arithmetic is that of
    ``generate``, which repeats the keys per beam; beams querying together as one batch would
    change the low bits). The batch dimension is the beam and the "heads" are (sentence, head)
    pairs, so every beam reads the same keys through a stride-0 view instead of a copy.
    """
    rows, heads, head_dim = q.shape
    beams, pairs = cache.beams, rows // cache.beams * heads
    keys, values = cache.cross(layer)  # (sentences, H, S, hd)
    source_len = keys.shape[2]
    keys = keys.reshape(1, pairs, source_len, head_dim).expand(beams, -1, -1, -1)
    values = values.reshape(1, pairs, source_len, head_dim).expand(beams, -1, -1, -1)
    q = q.view(-1, beams, heads, head_dim).transpose(0, 1).reshape(beams, pairs, 1, head_dim)
    attended = F.scaled_dot_product_attention(
        q, keys, values, attn_mask=cache.cross_mask, scale=head_dim**-0.5
    )  # (beams, sentences * H, 1, hd)
    return attended.view(beams, -1, heads * head_dim).transpose(0, 1).reshape(rows, -1)


def _self_attention(cache: DecoderCache, layer: int, qkv: Tensor) -> Tensor:
    """SDPA over the cache after storing this step's keys and values: (rows, H * hd)."""
    rows, _, heads, head_dim = qkv.shape
    keys, values = cache.write(layer, qkv[:, 1:].transpose(0, 1))  # (rows, H, t, hd) each
    q = qkv[:, 0].unsqueeze(2)  # (rows, H, 1, hd)
    attended = F.scaled_dot_product_attention(q, keys, values, scale=head_dim**-0.5)
    return attended.view(rows, heads * head_dim)


def step(plan: DecoderPlan, cache: DecoderCache | NativeDecoderCache, tokens: Tensor) -> Tensor:
    """Logits (rows, vocab) for the next token after ``tokens`` (rows,); advances ``cache``."""
    rows = tokens.shape[0]
    heads, head_dim = plan.heads, plan.head_dim
    x = plan.embed_tokens(tokens) * plan.embed_scale + plan.positions[cache.length]  # (rows, d)
    for index, layer in enumerate(plan.layers):
        qkv = layer.self_qkv(x).view(rows, 3, heads, head_dim)
        q_cross = layer.cross_q
        if isinstance(cache, NativeDecoderCache):
            x = layer.self_norm(x + layer.self_out(cache.self_attention(index, qkv)))
            attended = cache.cross_attention(index, q_cross(x).view(rows, heads, head_dim))
        else:
            x = layer.self_norm(x + layer.self_out(_self_attention(cache, index, qkv)))
            attended = cross_attention(q_cross(x).view(rows, heads, head_dim), cache, index)
        x = layer.cross_norm(x + layer.cross_out(attended))
        x = layer.final_norm(x + layer.feed_forward(x))
    cache.advance()
    logits = plan.lm_head(x)
    if plan.logits_bias is not None:
        logits.add_(plan.logits_bias)  # in place, a fresh tensor: no second (rows, vocab)
    return logits
