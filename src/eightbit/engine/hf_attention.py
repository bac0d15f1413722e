"""eightbit's decode attention as a Hugging Face attention implementation (``"eightbit_decode"``).

A decoder step (one query per row and head, float32, no dropout) runs the native kernel
(:func:`eightbit.kernels.decode_attention.decode_attention`); everything else (the encoder,
prefill, training) calls ``sdpa_attention_forward`` exactly, with masks built as for ``sdpa``, so
those bits do not change. The eightbit engine runs the same kernel on a model set up this way
(:func:`eightbit.engine.plan.build_plan` reads the setting), and as the kernel's result for a
row does not depend on strides or on the other rows, the engine's tokens stay those of
``generate``.

:func:`enable_for_int8` is applied to INT8 Marian models by :func:`eightbit.quantize` (and
``convert``, ``quantize_dynamic``) and :func:`eightbit.load`, when their linears run on the native
``avx2`` backend. FP32 models, and INT8 models on the ``reference`` or ``fbgemm`` backends, are left
on ``sdpa``: FP32 stays what Hugging Face computes (the engine is tested token-identical to plain
``generate`` there), and a non-native backend keeps meaning no eightbit C code.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

NAME = "eightbit_decode"


def _native_ready() -> bool:
    from eightbit.kernels import native

    return native.is_available()


def applies(
    query: Tensor, key: Tensor, value: Tensor, dropout: float, kwargs: dict[str, Any]
) -> bool:
    """Whether a call takes the native kernel: one float32 CPU query per row and head over
    keys of the same batch, no dropout, nothing only SDPA implements."""
    return (
        query.shape[2] == 1
        and query.dtype is torch.float32
        and key.dtype is torch.float32
        and value.dtype is torch.float32
        and query.is_cpu
        and key.is_cpu
        and value.is_cpu
        and dropout == 0.0
        and key.shape[0] == query.shape[0]
        and key.shape[1] == query.shape[1]
        and key.shape[3] == query.shape[3]
        and query.stride(-1) == 1
        and key.stride(-1) == 1
        and value.shape == key.shape
        and value.stride(-1) == 1
        and kwargs.get("position_bias") is None
        and kwargs.get("softcap") is None
        and not kwargs.get("output_attentions", False)
    )


def additive_mask(mask: Tensor | None, rows: int, keys: int) -> tuple[bool, Tensor | None]:
    """``(usable, mask)``: a (rows, keys) additive float mask from HF's 4-d mask (boolean, True
    attends; or float), None without one; ``usable`` is False for a per-head or per-query mask,
    which the kernel does not take."""
    if mask is None:
        return True, None
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[2] != 1 or mask.shape[3] != keys:
        return False, None
    flat = mask[:, 0, 0, :]
    if mask.dtype is torch.bool:
        flat = torch.zeros(flat.shape).masked_fill_(~flat, float("-inf"))
    elif mask.dtype is not torch.float32:
        return False, None
    flat = flat.expand(rows, keys)
    return True, flat if flat.stride(-1) == 1 else flat.contiguous()


def attention_forward(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """``sdpa_attention_forward``'s signature and result layout (batch, q_len, heads, hd)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if (
        applies(query, key, value, dropout, kwargs)
        and getattr(module, "num_key_value_groups", 1) == 1
    ):
        batch, heads, _, head_dim = query.shape
        usable, mask = additive_mask(attention_mask, batch, key.shape[2])
        if usable:
            from eightbit.kernels.decode_attention import decode_attention

            scale = head_dim**-0.5 if scaling is None else scaling
            out = decode_attention(query[:, :, 0], key, value, scale, mask, check=False)
            return out.view(batch, 1, heads, head_dim), None
    return sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
    )


def register() -> None:
    """Make ``"eightbit_decode"`` known to transformers (attention and mask interfaces)."""
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    from transformers.modeling_utils import AttentionInterface

    AttentionInterface.register(NAME, attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def enable(model: nn.Module) -> bool:
    """Switch a Marian model on ``sdpa`` to ``"eightbit_decode"`` where the native kernels run;
    returns whether it is on now. Other models are left as they are."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "marian":
        return False
    if config._attn_implementation == NAME:
        register()  # e.g. a model deep-copied in another process
        return True
    if config._attn_implementation != "sdpa" or not _native_ready():
        return False
    register()
    model.set_attn_implementation(NAME)
    return config._attn_implementation == NAME


def enable_for_int8(model: nn.Module) -> bool:
    """:func:`enable` for a Marian model whose INT8 linears run on the native ``avx2`` backend;
    returns whether the native decode attention is on."""
    from eightbit.nn import QuantLinear

    native = any(isinstance(m, QuantLinear) and m.backend == "avx2" for m in model.modules())
    return native and enable(model)


def is_enabled(model_config: Any) -> bool:
    """Whether a model with this config runs the native decode attention."""
    return getattr(model_config, "_attn_implementation", None) == NAME


def ensure_registered(model_config: Any) -> bool:
    """:func:`is_enabled`, registering ``"eightbit_decode"`` when it is: a model copied into
    another process (pickled) keeps the setting, but not the registration."""
    enabled = is_enabled(model_config)
    if enabled:
        register()
    return enabled
