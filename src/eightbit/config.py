"""Frozen configuration dataclasses: one name per option across API, CLI and saved metadata."""

from __future__ import annotations

from dataclasses import dataclass

DYNAMIC = "dynamic"
AUTO = "auto"  # per-tensor choice among the histogram methods: eightbit.mixed.method_choice
SYMMETRIC_METHODS = ("kl-symmetric", "kl-conjugate")


@dataclass(frozen=True)
class QuantConfig:
    """Post-training quantization.

    ``method``: a calibration method (``minmax``, ``ema``, ``kl-symmetric``, ``kl-independent``,
    ``kl-conjugate``, ``percentile``, ``mse``) for static INT8 activations, ``auto`` to pick one
    of them per activation by the output error it causes, or ``dynamic`` to measure activation
    ranges on every call. ``include``/``exclude`` are glob patterns over
    module names (``exclude`` wins). Softmax, LayerNorm and GELU are never quantized.
    """

    method: str = "kl-independent"
    per_channel: bool = True
    per_token: bool = False
    reduce_range: bool = False
    quantize_embeddings: bool = True
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    backend: str = "auto"
    bins: int = 2048
    percentile: float = 99.99
    ema_decay: float = 0.9

    @property
    def dynamic(self) -> bool:
        return self.method == DYNAMIC

    @property
    def symmetric_activations(self) -> bool:
        return self.method in SYMMETRIC_METHODS


@dataclass(frozen=True)
class QATConfig:
    """Quantization-aware training (Q8BERT defaults: symmetric int8, M = 127).

    Weight scale from ``max|W|`` (per tensor unless ``per_channel``), activation scale from an
    EMA of the batch ``max|x|`` (``ema_decay``); activation fake quantization starts after
    ``act_quant_delay`` training steps (Jacob et al.'s delayed quantization).
    """

    per_channel: bool = False
    symmetric: bool = True
    ema_decay: float = 0.99
    act_quant_delay: int = 0
    quantize_embeddings: bool = True
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    backend: str = "auto"
