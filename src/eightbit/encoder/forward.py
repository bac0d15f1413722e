"""The encoder path's forward: embeddings, fused-projection layers, pooler and classifier.

With the plan's ``torch`` kernels it computes what the Hugging Face forward of the same
(quantized) model computes, operation for operation (same modules, same SDPA call, same
attention mask), except that each layer's query, key and value come from one fused projection:
every logit is bit-identical (tested). The ``native`` kernels (the default where they run) fuse
attention, residual add + LayerNorm, and GELU with fc2's input quantize into eightbit's kernels:
the same math up to float rounding (see :func:`eightbit.encoder.build_classifier_plan`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eightbit.encoder.plan import NATIVE, ClassifierPlan, EncoderLayerPlan
from eightbit.kernels import native


def encode(
    plan: ClassifierPlan,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    token_type_ids: Tensor | None = None,
) -> Tensor:
    """Last hidden states (batch, seq_len, hidden) of the plan's BERT encoder."""
    bert = plan.model.bert
    batch, seq_len = input_ids.shape
    hidden = plan.hidden_size
    embedded = bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
    attend = _attention(plan, embedded, attention_mask)
    x = embedded.reshape(batch * seq_len, hidden)
    add_norm = native.add_layernorm_ if plan.kernels == NATIVE else _torch_add_layernorm
    for layer in plan.layers:
        h = layer.attention_out(attend(layer.qkv(x)))
        x = add_norm(h, x, layer.attention_norm)
        x = add_norm(_feed_forward(layer, x), x, layer.output_norm)
    return x.view(batch, seq_len, hidden)


def _torch_add_layernorm(h: Tensor, x: Tensor, norm: nn.LayerNorm) -> Tensor:
    """``norm(h + x)`` as the model's forward computes it (in place into ``h``)."""
    return norm(h.add_(x))


Attend = Callable[[Tensor], Tensor]  # (rows, 3 * hidden) fused projections -> (rows, hidden)


def _attention(plan: ClassifierPlan, embedded: Tensor, attention_mask: Tensor | None) -> Attend:
    """Self-attention of one batch: the native fused kernel where the plan chose it and every
    sequence has a token to attend to, else torch's SDPA exactly as the model's forward calls it."""
    batch, seq_len, _ = embedded.shape
    heads, head_dim, scale = plan.heads, plan.head_dim, plan.scaling
    valid = None if attention_mask is None else attention_mask.bool()
    if plan.kernels == NATIVE and (valid is None or bool(valid.any(dim=1).all())):
        if valid is None or bool(valid.all()):
            key_bias = None
        else:  # padding: keys that no query attends to
            key_bias = torch.zeros(valid.shape, dtype=torch.float32)
            key_bias.masked_fill_(~valid, float("-inf"))
        return lambda qkv: native.attention_f32(qkv, key_bias, batch, heads, scale)

    from transformers.masking_utils import create_bidirectional_mask

    # None for an all-ones mask, as in the model's own forward
    mask = create_bidirectional_mask(
        config=plan.model.bert.config, inputs_embeds=embedded, attention_mask=attention_mask
    )

    def sdpa(qkv: Tensor) -> Tensor:
        qkv = qkv.view(batch, seq_len, 3, heads, head_dim)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # (batch, heads, seq, hd)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
        return attended.transpose(1, 2).reshape(batch * seq_len, heads * head_dim)

    return sdpa


def _feed_forward(layer: EncoderLayerPlan, x: Tensor) -> Tensor:
    """fc2(GELU(fc1(x))), with the GELU (and fc2's input quantize) in fc1's epilogue where the
    plan fused them."""
    if not layer.gelu_in_fc1:
        return layer.fc2(layer.activation(layer.fc1(x)))
    if layer.quantized_fc2_input:
        return layer.fc2.forward_from_quantized(layer.fc1.forward_gelu(x, layer.fc2.input_qparams))
    return layer.fc2(layer.fc1.forward_gelu(x))


def classify(
    plan: ClassifierPlan,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    token_type_ids: Tensor | None = None,
) -> Tensor:
    """Logits (batch, num_labels): the encoder, then the model's own pooler and classifier."""
    model = plan.model
    hidden = encode(plan, input_ids, attention_mask, token_type_ids)
    return model.classifier(model.dropout(model.bert.pooler(hidden)))
