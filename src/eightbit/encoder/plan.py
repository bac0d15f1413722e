"""What the encoder path runs: a BERT sequence classifier taken apart into its layers' pieces.

Built once per model from a Hugging Face ``BertForSequenceClassification`` whose linear layers
eightbit quantized (:func:`eightbit.quantize` or :func:`eightbit.convert`; a layer left in FP32
stays an ``nn.Linear``). Each layer's query, key and value projections read one input and are
fused into one layer (:mod:`eightbit.engine.fuse`): one quantize and one GEMM instead of three,
with the same output columns. Every other piece is the model's own module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from eightbit.engine.fuse import fuse_linears
from eightbit.engine.plan import UnsupportedModelError
from eightbit.kernels import native
from eightbit.nn import QuantLinear

# the attention implementation the encoder path reproduces (transformers' default on CPU)
SDPA = "sdpa"
# the encoder path's attention, residual + LayerNorm and feed-forward GELU: eightbit's fused
# kernels, or torch's SDPA, LayerNorm and GELU called as the model's forward calls them
NATIVE, TORCH = "native", "torch"
Kernels = Literal["auto", "native", "torch"]


@dataclass(frozen=True)
class EncoderLayerPlan:
    """One post-norm BERT layer: fused self-attention projections, output, feed-forward."""

    qkv: nn.Module  # (rows, d) -> (rows, 3d): query, key, value side by side
    attention_out: nn.Module
    attention_norm: nn.LayerNorm
    fc1: nn.Module
    activation: nn.Module  # the model's own (GELU for BERT)
    fc2: nn.Module
    output_norm: nn.LayerNorm
    # fc1 applies the (exact erf) GELU in its kernel's epilogue, and when fc2 is static, also
    # quantizes the result to fc2's input (see :func:`_feed_forward_fusion`)
    gelu_in_fc1: bool = False
    quantized_fc2_input: bool = False


@dataclass(frozen=True)
class ClassifierPlan:
    """Everything a classification forward reads: the model's embeddings and head, the layers."""

    model: nn.Module  # the source model: its config, embeddings, pooler and classifier
    layers: tuple[EncoderLayerPlan, ...]
    heads: int
    head_dim: int
    scaling: float
    # NATIVE: :func:`eightbit.kernels.native.attention_f32`, :func:`~.native.add_layernorm_` and
    # the GELU fused into fc1 (:attr:`EncoderLayerPlan.gelu_in_fc1`)
    kernels: str = TORCH

    @property
    def hidden_size(self) -> int:
        return self.heads * self.head_dim


def is_quantized(model: nn.Module) -> bool:
    """Whether eightbit converted any linear layer of ``model`` to INT8."""
    return any(isinstance(m, QuantLinear) for m in model.modules())


def check_supported(model: nn.Module) -> None:
    """Raise :class:`UnsupportedModelError` unless the encoder path reproduces ``model``'s
    forward exactly: a BERT sequence classifier, encoder only, SDPA attention, no chunking."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "bert" or not all(
        hasattr(model, name) for name in ("bert", "dropout", "classifier")
    ):
        raise UnsupportedModelError(
            f"the encoder path runs BERT sequence classifiers, got {type(model).__name__}"
        )
    if config.is_decoder or config.add_cross_attention:
        raise UnsupportedModelError("the encoder path runs encoders only (config.is_decoder)")
    if config._attn_implementation != SDPA:
        raise UnsupportedModelError(
            f"the encoder path reproduces SDPA attention, the model uses "
            f"{config._attn_implementation!r}"
        )
    if config.chunk_size_feed_forward:
        raise UnsupportedModelError("the encoder path does not chunk the feed-forward block")
    if model.bert.pooler is None:
        raise UnsupportedModelError("the classifier has no pooler")


def _is_exact_gelu(activation: nn.Module) -> bool:
    """transformers' ``GELUActivation`` (``gelu``) or ``nn.GELU()``: the erf GELU."""
    if isinstance(activation, nn.GELU):
        return activation.approximate == "none"
    return type(activation).__name__ == "GELUActivation" and (
        getattr(activation, "act", None) is nn.functional.gelu
    )


def _feed_forward_fusion(fc1: nn.Module, activation: nn.Module, fc2: nn.Module) -> dict[str, bool]:
    """Which of GELU and fc2's input quantize the feed-forward block fuses into fc1's epilogue
    (native kernels only).

    The fused GELU is eightbit's exact GELU, bit for bit :func:`eightbit.kernels.gelu`; the
    model's forward, where torch hands the GELU to oneDNN, differs from it by up to 1.5e-6 per
    value, which now and then moves a quantized activation by one level."""
    gelu = (
        isinstance(fc1, QuantLinear)
        and not fc1.has_output_qparams
        and fc1.activation == "none"
        and _is_exact_gelu(activation)
    )
    quantized = (
        gelu
        and isinstance(fc2, QuantLinear)
        and fc2.mode == "static"
        and not fc2.has_output_qparams
    )
    return {"gelu_in_fc1": gelu, "quantized_fc2_input": quantized}


def _layer_plan(layer: Any, fuse: bool) -> EncoderLayerPlan:
    attention = layer.attention.self
    fc1, activation, fc2 = (
        layer.intermediate.dense,
        layer.intermediate.intermediate_act_fn,
        layer.output.dense,
    )
    return EncoderLayerPlan(
        qkv=fuse_linears([attention.query, attention.key, attention.value]),  # copies weights
        attention_out=layer.attention.output.dense,
        attention_norm=layer.attention.output.LayerNorm,
        fc1=fc1,
        activation=activation,
        fc2=fc2,
        output_norm=layer.output.LayerNorm,
        **(_feed_forward_fusion(fc1, activation, fc2) if fuse else {}),
    )


def native_kernels_supported(head_dim: int) -> bool:
    """Whether the fused native attention and LayerNorm run here for heads of ``head_dim``."""
    return head_dim % 16 == 0 and head_dim <= 128 and native.attention_available()


def build_classifier_plan(model: nn.Module, kernels: Kernels = "auto") -> ClassifierPlan:
    """The encoder plan of a BERT sequence classifier (:func:`check_supported`).

    ``kernels``: ``"torch"`` calls torch's SDPA, LayerNorm and GELU as the model's forward
    does (bit-identical logits); ``"native"`` runs eightbit's fused attention, which reads the
    fused projections' output directly (about 2x faster than SDPA at BERT-base sizes), residual
    add + LayerNorm on eightbit's thread pool, and eightbit's GELU (:func:`eightbit.kernels.gelu`)
    with fc2's input quantize in fc1's epilogue: the same math up to float rounding, which a
    quantized model amplifies now and then by a level flip (README: measured deviations);
    ``"auto"``: native where it runs (AVX-512 CPUs, head sizes a multiple of 16 up to 128).
    The fused projections hold copies of the weights: rebuild the plan after changing the model.
    """
    if kernels not in ("auto", NATIVE, TORCH):
        raise ValueError(f"kernels must be 'auto', 'native' or 'torch', got {kernels!r}")
    check_supported(model)
    config = model.config
    layers = model.bert.encoder.layer
    head_dim = config.hidden_size // config.num_attention_heads
    if kernels == NATIVE and not native_kernels_supported(head_dim):
        raise UnsupportedModelError(
            f"the native attention kernel needs AVX-512 and a head size that is a multiple of 16 "
            f"up to 128, got {head_dim}"
        )
    if kernels == "auto":
        kernels = NATIVE if native_kernels_supported(head_dim) else TORCH
    return ClassifierPlan(
        model=model,
        layers=tuple(_layer_plan(layer, kernels == NATIVE) for layer in layers),
        heads=config.num_attention_heads,
        head_dim=head_dim,
        scaling=layers[0].attention.self.scaling if len(layers) else head_dim**-0.5,
        kernels=kernels,
    )
