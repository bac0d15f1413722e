"""What the engine runs: a Marian model's encoder and decoder taken apart into the pieces the
encoder forward (:mod:`eightbit.engine.encoder`) and one decoder step need.

Built once per model from a Hugging Face ``MarianMTModel`` (FP32, or INT8 from
:func:`eightbit.quantize`: the layers are whatever modules the model holds, ``nn.Linear`` or
``QuantLinear``). Projections reading one input are fused, chained feed-forward blocks run in
uint8 (:mod:`eightbit.engine.fuse`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from eightbit.engine import hf_attention
from eightbit.engine.encoder import EncoderPlan, build_encoder_plan
from eightbit.engine.fuse import feed_forward, fuse_linears
from eightbit.errors import EightbitError
from eightbit.nn import QuantLinear


class UnsupportedModelError(EightbitError):
    """The model or its generation settings are outside what the eightbit engine implements."""


@dataclass(frozen=True)
class DecoderLayerPlan:
    """One post-norm decoder layer: self-attention, cross-attention, feed-forward."""

    self_qkv: nn.Module  # (rows, d) -> (rows, 3d)
    self_out: nn.Module
    self_norm: nn.LayerNorm
    cross_q: nn.Module
    cross_kv: nn.Module  # (rows, d) -> (rows, 2d), run once per batch on the encoder states
    cross_out: nn.Module
    cross_norm: nn.LayerNorm
    feed_forward: nn.Module  # fc2(activation(fc1(x))), uint8 inside when chained
    final_norm: nn.LayerNorm


@dataclass(frozen=True)
class DecoderPlan:
    """Everything a decoding step reads, plus the token ids and limits of the model."""

    encoder: EncoderPlan
    embed_tokens: nn.Module
    embed_scale: float
    positions: Tensor  # (max_positions, d) sinusoidal table
    layers: tuple[DecoderLayerPlan, ...]
    lm_head: nn.Module
    # (vocab,) final_logits_bias, or None when it is all zeros (Marian's is a zero buffer unless
    # converted from a model that had one): adding +0.0 changes no logit's value (-0.0 becomes
    # +0.0, which argmax, log-softmax and topk do not tell apart), so that pass is skipped
    logits_bias: Tensor | None
    vocab_size: int
    heads: int
    d_model: int
    start_token: int
    eos_token: int
    pad_token: int
    suppressed_tokens: tuple[int, ...]  # never generated (generation_config.bad_words_ids)
    # False when a row's result depends on the other rows (per-tensor dynamic INT8 measures one
    # range over the whole batch): then finished sentences stay in the batch, as in `generate`
    rows_independent: bool
    # the model runs eightbit's decode attention (engine.hf_attention): the engine then calls
    # the same kernel (engine.native_cache), else SDPA as the model does
    native_attention: bool = False

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads


def _suppressed_tokens(model: nn.Module) -> tuple[int, ...]:
    generation = getattr(model, "generation_config", None)
    bad = getattr(generation, "bad_words_ids", None) or []
    if any(len(ids) != 1 for ids in bad):
        raise UnsupportedModelError(
            "generation_config.bad_words_ids has multi-token entries; the eightbit engine "
            "suppresses single tokens only (use engine='hf')"
        )
    return tuple(ids[0] for ids in bad)


def _check_supported(model: nn.Module) -> None:
    config = model.config
    if getattr(config, "model_type", None) != "marian":
        raise UnsupportedModelError(
            f"the eightbit engine runs Marian models, got model_type {config.model_type!r}"
        )
    generation = getattr(model, "generation_config", None)
    for name, neutral in (("repetition_penalty", 1.0), ("no_repeat_ngram_size", 0)):
        if getattr(generation, name, neutral) not in (None, neutral):
            raise UnsupportedModelError(
                f"generation_config.{name} is set; the eightbit engine does not implement it "
                "(use engine='hf')"
            )


def _rows_independent(model: nn.Module) -> bool:
    return not any(
        isinstance(m, QuantLinear) and m.mode == "dynamic" and not m.per_token
        for m in model.modules()
    )


def _layer_plan(layer: nn.Module) -> DecoderLayerPlan:
    self_attn, cross = layer.self_attn, layer.encoder_attn
    return DecoderLayerPlan(
        self_qkv=fuse_linears([self_attn.q_proj, self_attn.k_proj, self_attn.v_proj]),
        self_out=self_attn.out_proj,
        self_norm=layer.self_attn_layer_norm,
        cross_q=cross.q_proj,
        cross_kv=fuse_linears([cross.k_proj, cross.v_proj]),
        cross_out=cross.out_proj,
        cross_norm=layer.encoder_attn_layer_norm,
        feed_forward=feed_forward(layer.fc1, layer.activation_fn, layer.fc2),
        final_norm=layer.final_layer_norm,
    )


def _logits_bias(model: nn.Module) -> Tensor | None:
    bias = model.final_logits_bias.detach().reshape(-1).float()
    return None if not bool(bias.any()) else bias


def build_plan(model: Any) -> DecoderPlan:
    """The decoder plan of a ``MarianMTModel`` (FP32 or eightbit INT8).

    Fused layers hold copies of the weights: rebuild the plan after changing the model.
    """
    _check_supported(model)
    config = model.config
    native_attention = hf_attention.ensure_registered(config)  # before the encoder looks it up
    decoder = model.get_decoder()
    d_model = config.d_model
    return DecoderPlan(
        encoder=build_encoder_plan(model),  # copies weights
        embed_tokens=decoder.embed_tokens,
        embed_scale=math.sqrt(d_model) if config.scale_embedding else 1.0,
        positions=decoder.embed_positions.weight.detach(),
        layers=tuple(_layer_plan(layer) for layer in decoder.layers),  # copies weights
        lm_head=model.lm_head,
        logits_bias=_logits_bias(model),
        vocab_size=model.final_logits_bias.numel(),
        heads=config.decoder_attention_heads,
        d_model=d_model,
        start_token=config.decoder_start_token_id,
        eos_token=config.eos_token_id,
        pad_token=config.pad_token_id,
        suppressed_tokens=_suppressed_tokens(model),
        rows_independent=_rows_independent(model),
        native_attention=native_attention,
    )
