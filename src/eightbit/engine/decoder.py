"""One incremental decoder step and the per-batch setup it needs (Marian: post-norm layers).

The encoder runs once per batch (the model's own encoder module); each step then embeds one new
token per row, attends over the cached keys/values with SDPA, and returns next-token logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from eightbit.engine.cache import DecoderCache
from eightbit.engine.plan import DecoderPlan


def encode(plan: DecoderPlan, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Encoder states (batch, source_len, d_model)."""
    return plan.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def new_cache(
    plan: DecoderPlan,
    encoder_states: Tensor,
    attention_mask: Tensor,
    max_steps: int,
    beams: int = 1,
) -> DecoderCache:
    """Cross-attention K/V for every layer (computed once) and an empty self-attention cache,
    for ``batch * beams`` rows (the beams of a sentence are adjacent rows)."""
    batch, source_len = encoder_states.shape[:2]
    heads, head_dim, layers = plan.heads, plan.head_dim, len(plan.layers)
    kv = torch.stack([layer.cross_kv(encoder_states) for layer in plan.layers])  # (L, B, S, 2d)
    kv = kv.view(layers, batch, source_len, 2, heads, head_dim).permute(0, 3, 1, 4, 2, 5)
    mask = torch.zeros(batch, 1, 1, source_len, dtype=encoder_states.dtype)
    mask.masked_fill_(attention_mask[:, None, None, :] == 0, torch.finfo(mask.dtype).min)
    if beams > 1:
        kv, mask = kv.repeat_interleave(beams, dim=2), mask.repeat_interleave(beams, dim=0)
    rows = batch * beams
    self_kv = encoder_states.new_empty((layers, 2, rows, heads, max_steps, head_dim))
    return DecoderCache(self_kv, kv.contiguous(), mask)


def step(plan: DecoderPlan, cache: DecoderCache, tokens: Tensor) -> Tensor:
    """Logits (rows, vocab) for the next token after ``tokens`` (rows,); advances ``cache``."""
    rows, d_model = tokens.shape[0], plan.d_model
    heads, head_dim = plan.heads, plan.head_dim
    scale = head_dim**-0.5
    x = plan.embed_tokens(tokens) * plan.embed_scale + plan.positions[cache.length]  # (rows, d)
    for index, layer in enumerate(plan.layers):
        q, k, v = layer.self_qkv(x).view(rows, 3, heads, head_dim).unbind(1)  # (rows, H, hd)
        keys, values = cache.write(index, k, v)  # (rows, H, t, hd)
        attended = F.scaled_dot_product_attention(q.unsqueeze(2), keys, values, scale=scale)
        x = layer.self_norm(x + layer.self_out(attended.view(rows, d_model)))
        q = layer.cross_q(x).view(rows, heads, 1, head_dim)
        keys, values = cache.cross(index)  # (rows, H, S, hd)
        attended = F.scaled_dot_product_attention(
            q, keys, values, attn_mask=cache.cross_mask, scale=scale
        )
        x = layer.cross_norm(x + layer.cross_out(attended.view(rows, d_model)))
        x = layer.final_norm(x + layer.feed_forward(x))
    cache.advance()
    return plan.lm_head(x) + plan.logits_bias
