"""Walk a model, swap modules, calibrate, convert: the prepare -> run data -> convert flow.

Post-training (Bhandare et al. 2019): :func:`prepare` inserts observers in front of every selected
``nn.Linear``, :func:`calibrate` runs real inputs through it, :func:`convert` swaps in INT8
modules (and chains ReLU feed-forward blocks in uint8, :func:`eightbit.fusion.chain_feed_forward`).
Quantization-aware training (Q8BERT): :func:`prepare_qat` inserts fake-quant modules,
the user fine-tunes, :func:`convert` is the same. :func:`quantize` does the whole PTQ flow.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from eightbit.calibration import Observer, ObserverConfig, make_observer
from eightbit.config import AUTO, QATConfig, QuantConfig
from eightbit.errors import EightbitError
from eightbit.fusion import chain_feed_forward
from eightbit.kernels import resolve_backend
from eightbit.nn import FakeQuantEmbedding, FakeQuantLinear, QuantEmbedding, QuantLinear
from eightbit.nn.weights import weight_qparams
from eightbit.progress import progress as progress_bar

log = logging.getLogger(__name__)

DEFAULT_QUANT_CONFIG = QuantConfig()
DEFAULT_QAT_CONFIG = QATConfig()

RunFn = Callable[[nn.Module, Any], object]


class CalibrationError(EightbitError):
    """Calibration could not produce ranges (no data, or data with NaN/Inf)."""


def _selected(name: str, include: tuple[str, ...], exclude: tuple[str, ...]) -> bool:
    matches = lambda patterns: any(fnmatch.fnmatchcase(name, p) for p in patterns)  # noqa: E731
    return matches(include) and not matches(exclude)


def _swap_modules(model: nn.Module, make: Callable[[str, nn.Module], nn.Module | None]) -> int:
    """Replace submodules by ``make(name, module)`` (None keeps it); shared modules stay shared."""
    replaced: dict[int, nn.Module] = {}
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            if id(child) not in replaced:
                name = f"{parent_name}.{child_name}" if parent_name else child_name
                new = make(name, child)
                if new is None:
                    continue
                replaced[id(child)] = new
            setattr(parent, child_name, replaced[id(child)])
    return len(replaced)


def _is_plain(module: nn.Module, cls: type[nn.Module]) -> bool:
    """Exactly ``cls``: subclasses (e.g. sinusoidal position tables) have other forwards."""
    return type(module) is cls


def prepare(
    model: nn.Module, config: QuantConfig = DEFAULT_QUANT_CONFIG, inplace: bool = False
) -> nn.Module:
    """Insert calibration observers in front of the selected Linear layers (outputs unchanged)."""
    if config.dynamic:
        raise ValueError("dynamic quantization needs no calibration: call quantize() directly")
    model = model if inplace else copy.deepcopy(model)
    new_observer = _observer_factory(config)

    def make(name: str, module: nn.Module) -> nn.Module | None:
        if _is_plain(module, nn.Linear) and _selected(name, config.include, config.exclude):
            return FakeQuantLinear(
                module,
                new_observer(),
                per_channel=config.per_channel,
                fake_quant=False,
                symmetric=config.symmetric_activations,
                reduce_range=config.reduce_range,
            )
        return None

    count = _swap_modules(model, make)
    log.info("prepared %d linear layers for calibration (%s)", count, config.method)
    model._eightbit_config = config  # read by convert()
    return model


def _observer_factory(config: QuantConfig) -> Callable[[], Observer]:
    if config.method == AUTO:  # one histogram per tensor; the method is chosen after calibration
        from eightbit.mixed.method_choice import recording_observer

        return lambda: recording_observer(config)
    observer_config = ObserverConfig(
        method=config.method,
        bins=config.bins,
        percentile=config.percentile,
        ema_decay=config.ema_decay,
        symmetric=config.symmetric_activations,
        narrow=config.symmetric_activations,
        reduce_range=config.reduce_range,
    )
    return lambda: make_observer(observer_config)


def calibrate(
    model: nn.Module,
    batches: Iterable[Any],
    run: RunFn | None = None,
    progress: bool = True,
) -> int:
    """Run calibration batches through a prepared model; returns the number of batches seen.

    ``run(model, batch)`` feeds one batch (default: ``model(**batch)`` for dicts, else
    ``model(batch)``). Adapters that know padding wrap their calls in
    :func:`eightbit.nn.observation_mask`.
    """
    run = run or _default_run
    was_training = model.training
    model.eval()
    seen = 0
    with torch.no_grad():
        for batch in progress_bar(batches, "calibrating", "batch", progress):
            run(model, batch)
            seen += 1
    model.train(was_training)
    if seen == 0:
        raise CalibrationError("the calibration set is empty; expected at least one batch")
    return seen


def _default_run(model: nn.Module, batch: Any) -> object:
    return model(**batch) if isinstance(batch, dict) else model(batch)


def prepare_qat(
    model: nn.Module, config: QATConfig = DEFAULT_QAT_CONFIG, inplace: bool = False
) -> nn.Module:
    """Insert Q8BERT fake quantization: every selected Linear, and the embeddings."""
    model = model if inplace else copy.deepcopy(model)
    observer_config = ObserverConfig(
        method="ema",
        ema_decay=config.ema_decay,
        symmetric=config.symmetric,
        narrow=config.symmetric,
    )

    def make(name: str, module: nn.Module) -> nn.Module | None:
        if not _selected(name, config.include, config.exclude):
            return None
        if _is_plain(module, nn.Linear):
            return FakeQuantLinear(
                module,
                make_observer(observer_config),
                per_channel=config.per_channel,
                fake_quant=True,
                act_quant_delay=config.act_quant_delay,
                symmetric=config.symmetric,
                reduce_range=False,
            )
        if config.quantize_embeddings and _is_plain(module, nn.Embedding):
            return FakeQuantEmbedding(module, per_channel=config.per_channel)
        return None

    count = _swap_modules(model, make)
    log.info("prepared %d modules for quantization-aware training", count)
    model._eightbit_config = config
    return model


def convert(model: nn.Module, backend: str | None = None, inplace: bool = False) -> nn.Module:
    """Swap observed / fake-quant modules for INT8 modules (static activation ranges)."""
    config = getattr(model, "_eightbit_config", None)
    if config is None:
        raise ValueError("model was not prepared: call prepare() or prepare_qat() first")
    model = model if inplace else copy.deepcopy(model)
    backend = resolve_backend(backend or config.backend)
    tied = _TiedWeights()

    def make(name: str, module: nn.Module) -> nn.Module | None:
        if isinstance(module, FakeQuantLinear):
            new = QuantLinear.from_float(
                module, module.weight_qparams(), input_qp=module.input_qparams(), backend=backend
            )
            return tied.share(module.weight, module.per_channel, new)
        if isinstance(module, FakeQuantEmbedding):
            new = QuantEmbedding.from_float(module, module.weight_qparams())
            return tied.share(module.weight, module.per_channel, new)
        if (
            isinstance(config, QuantConfig)
            and config.quantize_embeddings
            and _is_plain(module, nn.Embedding)
            and _selected(name, config.include, config.exclude)
        ):
            return tied.int8_embedding(module)
        return None

    _swap_modules(model, make)
    chain_feed_forward(model)  # fc1 -> ReLU -> fc2 in uint8 (no dequantize/quantize between)
    _decode_attention(model)
    model._eightbit_config = config
    return model


def quantize_dynamic(model: nn.Module, config: QuantConfig, inplace: bool = False) -> nn.Module:
    """Dynamic INT8: weights quantized now, activation ranges measured on every call."""
    model = model if inplace else copy.deepcopy(model)
    backend = resolve_backend(config.backend)
    tied = _TiedWeights()

    def make(name: str, module: nn.Module) -> nn.Module | None:
        if not _selected(name, config.include, config.exclude):
            return None
        if _is_plain(module, nn.Linear):
            new = QuantLinear.from_float(
                module,
                weight_qparams(module.weight, config.per_channel),
                input_qp=None,
                per_token=config.per_token,
                backend=backend,
            )
            return tied.share(module.weight, config.per_channel, new)
        if config.quantize_embeddings and _is_plain(module, nn.Embedding):
            return tied.int8_embedding(module)
        return None

    _swap_modules(model, make)
    _decode_attention(model)
    model._eightbit_config = config
    return model


def _decode_attention(model: nn.Module) -> None:
    """INT8 Marian models on the native backend decode with eightbit's decode attention."""
    from eightbit.engine.hf_attention import enable_for_int8

    enable_for_int8(model)


def quantize(
    model: nn.Module,
    calibration_batches: Iterable[Any] | None,
    config: QuantConfig = DEFAULT_QUANT_CONFIG,
    run: RunFn | None = None,
    progress: bool = True,
) -> nn.Module:
    """Post-training INT8 quantization: prepare, calibrate on ``calibration_batches``, convert.

    The input model is left untouched; the INT8 model is returned. With ``method="auto"`` the
    batches are run twice (histograms, then each candidate range's output error) and the chosen
    method of every layer is recorded in the saved metadata (``extra.calibration_methods``).
    """
    if config.dynamic:
        return quantize_dynamic(model, config)
    if calibration_batches is None:
        raise CalibrationError(f"method {config.method!r} needs calibration batches")
    prepared = prepare(model, config)
    if config.method != AUTO:
        calibrate(prepared, calibration_batches, run, progress)
        return convert(prepared, inplace=True)
    from eightbit.mixed.method_choice import choose_methods

    batches = list(calibration_batches)  # two passes: histograms, then the error of each range
    calibrate(prepared, batches, run, progress)
    chosen = choose_methods(prepared, batches, run or _default_run, config, progress)
    int8 = convert(prepared, inplace=True)
    int8._eightbit_extra = {"calibration_methods": chosen}  # saved by eightbit.save
    return int8


class _TiedWeights:
    """Tied float weights (Marian's shared embedding / output projection) share one int8 copy."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, bool], nn.Module] = {}

    def int8_embedding(self, embedding: nn.Module) -> nn.Module:
        """A plain float embedding as int8 rows with per-row scales (sharing tied weights)."""
        new = QuantEmbedding.from_float(embedding, weight_qparams(embedding.weight, True))
        return self.share(embedding.weight, True, new)

    def share(self, weight: torch.Tensor, per_channel: bool, module: nn.Module) -> nn.Module:
        key = (id(weight), per_channel)
        first = self._seen.setdefault(key, module)
        if first is not module and torch.equal(first.weight, module.weight):
            module.weight = first.weight
            module.weight_scale = first.weight_scale
        return module
