"""Sensitivity analysis and FP32 fallback of a model on its task, scored on a fixed dev sample.

One calibration pass records a histogram per activation; the requested method (or ``auto``)
reads its ranges off them; the model is converted once. Every single-layer mix is then made by
swapping module objects (:mod:`eightbit.mixed.units`) and scored on the same dev examples.

The model family and its metric enter as a :class:`SensitivityTask`: translation
(:func:`eightbit.evaluate.sensitivity_nmt.translation_task`, dev BLEU) or sequence
classification (:func:`eightbit.evaluate.sensitivity_classify.classification_task`, dev accuracy
in percent); nothing here knows either.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from torch import nn

from eightbit.config import AUTO, QuantConfig
from eightbit.mixed.fallback import FallbackResult, fallback_to_fp32
from eightbit.mixed.method_choice import apply_method, recorded_histograms
from eightbit.mixed.sensitivity import (
    LayerSensitivity,
    Metric,
    RunFn,
    one_layer_switched,
    ranked,
    unit_sqnr,
)
from eightbit.mixed.units import Unit, quantized_units
from eightbit.transform import calibrate, convert, prepare

log = logging.getLogger(__name__)

HISTOGRAM_LAYERS = 4  # activations plotted in the report: the most harmful linear layers
T = TypeVar("T")


@dataclass
class SensitivityTask:
    """An FP32 model with its calibration data and its dev metric.

    ``kind`` (``translation`` or ``classification``) picks the report's tables; ``score(model)``
    is the metric the fallback budget is in (higher is better); ``evaluate(model)`` is one row
    of the report's accuracy and speed tables and holds ``score``'s value under ``metric_key``.
    ``describe`` goes into the report and into the saved model's ``extra.fp32_fallback``
    (``metric``: what is measured, and how many dev and calibration examples).
    """

    kind: str
    model: nn.Module
    tokenizer: Any
    batches: list[Any]
    run: RunFn
    score: Metric
    evaluate: Callable[[nn.Module], dict[str, Any]]
    metric_key: str
    describe: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SensitivityConfig:
    """How to analyse: calibration ``method`` (a histogram method or ``auto``), kernel
    ``backend``, and ``max_drop``, the fallback budget in metric points (BLEU, or accuracy
    percentage points), ``None`` for no fallback. ``quantization`` holds every other
    post-training option (per-channel weights, include/exclude patterns, histogram bins...);
    its own ``method`` and ``backend`` are ignored in favour of the two fields here."""

    method: str = "kl-independent"
    backend: str = "auto"
    max_drop: float | None = None
    progress: bool = True
    quantization: QuantConfig = field(default_factory=QuantConfig)

    def quant_config(self, method: str) -> QuantConfig:
        """The post-training options with ``method`` and this analysis's backend."""
        return replace(self.quantization, method=method, backend=self.backend)


def dev_sample(dev: Sequence[T], size: int | None, seed: int) -> list[T]:
    """``size`` dev items drawn with a fixed seed (all of them if ``size`` is ``None`` or
    larger than ``dev``)."""
    if size is not None and size <= 0:
        raise ValueError(f"the dev sample must hold at least one example, got {size}")
    if size is None or size >= len(dev):
        return list(dev)
    return random.Random(seed).sample(list(dev), size)


@dataclass
class Calibrated:
    """An FP32 model, its INT8 conversion and what calibration recorded, ready to mix."""

    fp32: nn.Module
    int8: nn.Module
    units: list[Unit]
    methods: dict[str, dict[str, Any]]
    prepared: nn.Module
    config: QuantConfig


def calibrate_once(task: SensitivityTask, config: SensitivityConfig) -> Calibrated:
    """Record histograms on the task's batches, give every layer the method's range, convert
    once."""
    recording = config.quant_config(AUTO)
    prepared = prepare(task.model, recording)
    calibrate(prepared, task.batches, task.run, config.progress)
    methods = apply_method(
        prepared, recording, config.method, task.batches, task.run, config.progress
    )
    int8 = convert(prepared)
    int8._eightbit_config = config.quant_config(config.method)
    int8._eightbit_extra = {"calibration_methods": methods}
    return Calibrated(task.model, int8, quantized_units(int8), methods, prepared, recording)


def _fallback(
    cal: Calibrated,
    task: SensitivityTask,
    layers: list[LayerSensitivity],
    fp32_metric: float,
    int8_metric: float,
    config: SensitivityConfig,
) -> FallbackResult:
    if config.max_drop is None:
        raise ValueError("the FP32 fallback needs config.max_drop")
    by_name = {u.name: u for u in cal.units}
    ranking = [by_name[s.name] for s in ranked(layers)]
    return fallback_to_fp32(
        cal.fp32,
        cal.int8,
        ranking,
        task.score,
        fp32_metric,
        int8_metric,
        config.max_drop,
        config.progress,
    )


def fallback_record(result: FallbackResult, task: SensitivityTask) -> dict[str, Any]:
    """What the saved model's metadata says about its FP32 layers (``extra.fp32_fallback``)."""
    return {
        "fp32_layers": list(result.fp32_layers),
        **task.describe,
        "fp32": result.fp32_metric,
        "int8": result.int8_metric,
        "final": result.final_metric,
        "drop": result.drop,
        "max_drop": result.max_drop,
        "evaluations": result.evaluations,
    }


def quantize_with_fallback(
    task: SensitivityTask, config: SensitivityConfig
) -> tuple[nn.Module, dict[str, Any]]:
    """INT8 model with the fewest most sensitive layers in FP32 such that the dev metric drops
    by at most ``config.max_drop``; returns ``(model, fallback record)``.

    Sensitivity here is the metric a layer recovers when left FP32 alone (ties: lower SQNR).
    """
    if config.max_drop is None:
        raise ValueError("quantize_with_fallback needs config.max_drop")
    cal = calibrate_once(task, config)
    fp32_metric, int8_metric = task.score(cal.fp32), task.score(cal.int8)
    layers = _layer_table(cal, task, int8_metric, None, config.progress)
    result = _fallback(cal, task, layers, fp32_metric, int8_metric, config)
    record = fallback_record(result, task)
    cal.int8._eightbit_extra["fp32_fallback"] = record
    return cal.int8, record


def _layer_table(
    cal: Calibrated,
    task: SensitivityTask,
    int8_metric: float,
    fp32_metric: float | None,
    progress: bool,
) -> list[LayerSensitivity]:
    sqnr = unit_sqnr(cal.fp32, cal.int8, cal.units, task.batches, task.run, progress)
    recovered = one_layer_switched(cal.int8, cal.fp32, cal.units, task.score, int8_metric, progress)
    alone = (
        one_layer_switched(cal.fp32, cal.int8, cal.units, task.score, fp32_metric, progress)
        if fp32_metric is not None
        else {}
    )
    return [
        LayerSensitivity(u.name, u.kind, sqnr[u.name], alone.get(u.name), recovered[u.name])
        for u in cal.units
    ]


def run_sensitivity(
    task: SensitivityTask, config: SensitivityConfig, model_name: str = ""
) -> dict[str, Any]:
    """The full analysis of one model and method: accuracy, speed, per-layer sensitivity,
    histograms of the most harmful layers' inputs, and the fallback if a budget is given."""
    started = time.perf_counter()
    cal = calibrate_once(task, config)
    fp32_row, int8_row = task.evaluate(cal.fp32), task.evaluate(cal.int8)
    fp32_metric, int8_metric = fp32_row[task.metric_key], int8_row[task.metric_key]
    layers = ranked(_layer_table(cal, task, int8_metric, fp32_metric, config.progress))
    plotted = [s.name for s in layers if s.kind == "linear"][:HISTOGRAM_LAYERS]
    report: dict[str, Any] = {
        "model": model_name,
        "task": task.kind,
        "method": config.method,
        **task.describe,
        "fp32": fp32_row,
        "int8": int8_row,
        "layers": [_layer_row(s, cal.methods) for s in layers],
        "histograms": recorded_histograms(cal.prepared, cal.config, plotted),
    }
    if config.max_drop is not None:
        result = _fallback(cal, task, layers, fp32_metric, int8_metric, config)
        report["fallback"] = fallback_record(result, task)
        report["mixed"] = task.evaluate(cal.int8)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def _layer_row(s: LayerSensitivity, methods: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": s.name,
        "kind": s.kind,
        "method": methods.get(s.name, {}).get("method"),
        "sqnr_db": round(s.sqnr_db, 2) if math.isfinite(s.sqnr_db) else None,  # None: exact
        "only_int8_delta": s.only_int8_delta,
        "only_fp32_delta": s.only_fp32_delta,
        "harm": round(s.harm, 4),
    }
