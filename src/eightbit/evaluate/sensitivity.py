"""Sensitivity analysis and FP32 fallback for Marian translation models, scored by dev BLEU.

One calibration pass records a histogram per activation; the requested method (or ``auto``)
reads its ranges off them; the model is converted once. Every single-layer mix is then made by
swapping module objects (:mod:`eightbit.mixed.units`) and scored by greedy sacreBLEU on a fixed,
seeded sample of the dev split, so layers are compared on the same sentences.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from eightbit.config import AUTO, QuantConfig
from eightbit.evaluate.metrics import translation_scores
from eightbit.mixed.fallback import FallbackResult, fallback_to_fp32
from eightbit.mixed.method_choice import apply_method, recorded_histograms
from eightbit.mixed.sensitivity import (
    LayerSensitivity,
    one_layer_switched,
    ranked,
    unit_sqnr,
)
from eightbit.mixed.units import Unit, quantized_units
from eightbit.models.marian import calibration_batches, calibration_run, load_marian, translate
from eightbit.transform import calibrate, convert, prepare

log = logging.getLogger(__name__)

HISTOGRAM_LAYERS = 4  # activations plotted in the report: the most harmful linear layers


@dataclass(frozen=True)
class SensitivityConfig:
    """What to analyse; the defaults finish in minutes on the shipped model (2 CPU cores)."""

    model_dir: Path
    method: str = "kl-independent"
    dev_size: int = 100
    seed: int = 0
    backend: str = "auto"
    max_bleu_drop: float | None = None
    progress: bool = True


@dataclass
class DevScorer:
    """Greedy dev-set BLEU of a model (the ``metric`` of :mod:`eightbit.mixed`)."""

    tokenizer: Any
    dev: list[tuple[str, str]]

    def __call__(self, model: nn.Module) -> float:
        return self.evaluate(model)["bleu"]

    def evaluate(self, model: nn.Module) -> dict[str, Any]:
        """BLEU, chrF, EOS failures, translate seconds and generated tokens per second."""
        start = time.perf_counter()
        outputs = translate(model, self.tokenizer, [s for s, _ in self.dev], progress=False)
        seconds = time.perf_counter() - start
        texts = [o.text for o in outputs]
        scores = translation_scores(
            texts, [r for _, r in self.dev], [o.hit_length_limit for o in outputs]
        )
        tokens = sum(len(ids) for ids in self.tokenizer(text_target=texts)["input_ids"])
        return {
            **scores.__dict__,
            "translate_seconds": round(seconds, 2),
            "tokens": tokens,
            "tokens_per_second": round(tokens / seconds, 1),
        }


def dev_sample(dev: list[tuple[str, str]], size: int, seed: int) -> list[tuple[str, str]]:
    """``size`` dev pairs drawn with a fixed seed (all of them if ``size`` is larger)."""
    if size <= 0:
        raise ValueError(f"the dev sample must hold at least one sentence, got {size}")
    return random.Random(seed).sample(dev, min(size, len(dev)))


@dataclass
class Calibrated:
    """An FP32 model, its INT8 conversion and what calibration recorded, ready to mix."""

    fp32: nn.Module
    int8: nn.Module
    units: list[Unit]
    methods: dict[str, dict[str, Any]]
    prepared: nn.Module
    config: QuantConfig
    batches: list[Any]


def calibrate_once(
    model: nn.Module, tokenizer: Any, sources: list[str], method: str, backend: str, progress: bool
) -> Calibrated:
    """Record histograms on ``sources``, give every layer ``method``'s range, convert once."""
    config = QuantConfig(method=AUTO, backend=backend)
    batches = calibration_batches(model, tokenizer, sources, progress=progress)
    prepared = prepare(model, config)
    calibrate(prepared, batches, calibration_run, progress)
    methods = apply_method(prepared, config, method, batches, calibration_run, progress)
    int8 = convert(prepared)
    int8._eightbit_config = QuantConfig(method=method, backend=backend)
    int8._eightbit_extra = {"calibration_methods": methods}
    return Calibrated(model, int8, quantized_units(int8), methods, prepared, config, batches)


def _calibrated(config: SensitivityConfig, sources: list[str]) -> tuple[Calibrated, Any]:
    model, tokenizer = load_marian(config.model_dir)
    return calibrate_once(
        model, tokenizer, sources, config.method, config.backend, config.progress
    ), tokenizer


def _fallback(
    cal: Calibrated,
    scorer: DevScorer,
    layers: list[LayerSensitivity],
    fp32_bleu: float,
    int8_bleu: float,
    max_drop: float,
    progress: bool,
) -> FallbackResult:
    by_name = {u.name: u for u in cal.units}
    ranking = [by_name[s.name] for s in ranked(layers)]
    return fallback_to_fp32(
        cal.fp32, cal.int8, ranking, scorer, fp32_bleu, int8_bleu, max_drop, progress
    )


def fallback_record(result: FallbackResult, dev_sentences: int) -> dict[str, Any]:
    """What the saved model's metadata says about its FP32 layers (``extra.fp32_fallback``)."""
    return {
        "fp32_layers": list(result.fp32_layers),
        "metric": "dev BLEU (greedy, sacreBLEU)",
        "dev_sentences": dev_sentences,
        "fp32": result.fp32_metric,
        "int8": result.int8_metric,
        "final": result.final_metric,
        "drop": result.drop,
        "max_drop": result.max_drop,
        "evaluations": result.evaluations,
    }


def quantize_with_fallback(
    config: SensitivityConfig, sources: list[str], dev: list[tuple[str, str]]
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """INT8 Marian model with the fewest most sensitive layers in FP32 such that dev BLEU drops by
    at most ``config.max_bleu_drop``; returns ``(model, tokenizer, fallback record)``.

    Sensitivity here is the BLEU a layer recovers when left FP32 alone (ties: lower SQNR).
    """
    if config.max_bleu_drop is None:
        raise ValueError("quantize_with_fallback needs config.max_bleu_drop")
    cal, tokenizer = _calibrated(config, sources)
    scorer = DevScorer(tokenizer, dev_sample(dev, config.dev_size, config.seed))
    fp32_bleu, int8_bleu = scorer(cal.fp32), scorer(cal.int8)
    layers = _layer_table(cal, scorer, int8_bleu, None, config.progress)
    result = _fallback(
        cal, scorer, layers, fp32_bleu, int8_bleu, config.max_bleu_drop, config.progress
    )
    record = fallback_record(result, len(scorer.dev))
    cal.int8._eightbit_extra["fp32_fallback"] = record
    return cal.int8, tokenizer, record


def _layer_table(
    cal: Calibrated, scorer: DevScorer, int8_bleu: float, fp32_bleu: float | None, progress: bool
) -> list[LayerSensitivity]:
    sqnr = unit_sqnr(cal.fp32, cal.int8, cal.units, cal.batches, calibration_run, progress)
    recovered = one_layer_switched(cal.int8, cal.fp32, cal.units, scorer, int8_bleu, progress)
    alone = (
        one_layer_switched(cal.fp32, cal.int8, cal.units, scorer, fp32_bleu, progress)
        if fp32_bleu is not None
        else {}
    )
    return [
        LayerSensitivity(u.name, u.kind, sqnr[u.name], alone.get(u.name), recovered[u.name])
        for u in cal.units
    ]


def run_sensitivity(
    config: SensitivityConfig, sources: list[str], dev: list[tuple[str, str]]
) -> dict[str, Any]:
    """The full analysis of one model and method: accuracy, speed, per-layer sensitivity,
    histograms of the most harmful layers' inputs, and the fallback if a budget is given."""
    started = time.perf_counter()
    cal, tokenizer = _calibrated(config, sources)
    scorer = DevScorer(tokenizer, dev_sample(dev, config.dev_size, config.seed))
    fp32_row, int8_row = scorer.evaluate(cal.fp32), scorer.evaluate(cal.int8)
    layers = ranked(_layer_table(cal, scorer, int8_row["bleu"], fp32_row["bleu"], config.progress))
    plotted = [s.name for s in layers if s.kind == "linear"][:HISTOGRAM_LAYERS]
    report: dict[str, Any] = {
        "model": str(config.model_dir),
        "method": config.method,
        "calibration_sentences": len(sources),
        "dev_sentences": len(scorer.dev),
        "seed": config.seed,
        "fp32": fp32_row,
        "int8": int8_row,
        "layers": [_layer_row(s, cal.methods) for s in layers],
        "histograms": recorded_histograms(cal.prepared, cal.config, plotted),
    }
    if config.max_bleu_drop is not None:
        result = _fallback(
            cal,
            scorer,
            layers,
            fp32_row["bleu"],
            int8_row["bleu"],
            config.max_bleu_drop,
            config.progress,
        )
        report["fallback"] = fallback_record(result, len(scorer.dev))
        report["mixed"] = scorer.evaluate(cal.int8)
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
