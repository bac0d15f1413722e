"""The main job: FP32 vs INT8 translation quality with every calibration method, side by side.

Bhandare et al. 2019: calibrate on 600 training sentences, quantize, translate the test set and
compare BLEU; naive min/max ranges may break the end-of-sentence token, KL thresholds fix it.
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn

from eightbit.atomic import write_text_atomic
from eightbit.calibration import CALIBRATION_METHODS
from eightbit.config import DYNAMIC, QuantConfig
from eightbit.evaluate.metrics import translation_scores
from eightbit.evaluate.report import bar_chart_png, markdown_table, write_json
from eightbit.evaluate.size import directory_size_mb
from eightbit.models.marian import (
    MAX_SENTENCES,
    calibration_batches,
    calibration_run,
    load_marian,
    save_translation_model,
    translate,
)
from eightbit.models.outliers import plant_ffn_outliers
from eightbit.transform import quantize

log = logging.getLogger(__name__)

ALL_METHODS = (*CALIBRATION_METHODS, DYNAMIC)


@dataclass(frozen=True)
class NmtEvalConfig:
    """What to evaluate; defaults reproduce the paper's protocol on the shipped model."""

    model_dir: Path
    methods: tuple[str, ...] = ALL_METHODS
    calibration_size: int = 600
    test_size: int | None = None
    beam: int = 1
    seed: int = 0
    backend: str = "auto"
    outlier_scale: float | None = None  # plant outliers first: models.outliers
    engine: str = "eightbit"
    batch_tokens: int | None = None  # default_batch_tokens(beam)
    max_sentences: int = MAX_SENTENCES
    workers: int | None = None  # one per intra-op thread
    worker_kind: str = "auto"  # data.parallel.map_in_workers: processes for many batches
    progress: bool = True


def sample_calibration_sources(train: list[tuple[str, str]], size: int, seed: int) -> list[str]:
    """``size`` source sentences drawn at random (seeded) from the training pairs."""
    if size <= 0 or not train:
        raise ValueError("the calibration set is empty; expected a positive calibration size")
    rng = random.Random(seed)
    return [src for src, _ in rng.sample(train, min(size, len(train)))]


def _evaluate(
    model: nn.Module, tokenizer: Any, test: list[tuple[str, str]], config: NmtEvalConfig
) -> dict[str, Any]:
    start = time.perf_counter()
    outputs = translate(
        model,
        tokenizer,
        [s for s, _ in test],
        beam=config.beam,
        engine=config.engine,
        batch_tokens=config.batch_tokens,
        max_sentences=config.max_sentences,
        workers=config.workers,
        worker_kind=config.worker_kind,
        progress=config.progress,
    )
    seconds = time.perf_counter() - start
    scores = translation_scores(
        [o.text for o in outputs], [r for _, r in test], [o.hit_length_limit for o in outputs]
    )
    return {
        **asdict(scores),
        "translate_seconds": round(seconds, 2),
        "hypotheses": [o.text for o in outputs],
    }


def run_nmt_eval(
    config: NmtEvalConfig, train: list[tuple[str, str]], test: list[tuple[str, str]]
) -> dict[str, Any]:
    """Quantize the model with every method in ``config.methods``; score each on ``test``."""
    model, tokenizer = load_marian(config.model_dir)
    if config.outlier_scale is not None:
        plant_ffn_outliers(model, config.outlier_scale)
    test = test[: config.test_size] if config.test_size else test
    calib_sources = sample_calibration_sources(train, config.calibration_size, config.seed)
    calib = calibration_batches(model, tokenizer, calib_sources, progress=config.progress)
    fp32 = _evaluate(model, tokenizer, test, config)
    fp32["size_mb"] = round(directory_size_mb(config.model_dir), 3)
    results = []
    for method in config.methods:
        log.info("quantizing with %s", method)
        start = time.perf_counter()
        int8 = quantize(
            model,
            None if method == DYNAMIC else calib,
            QuantConfig(method=method, backend=config.backend),
            run=calibration_run,
            progress=config.progress,
        )
        quantize_seconds = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            size_mb = directory_size_mb(save_translation_model(int8, tokenizer, Path(tmp) / "int8"))
        row = {
            "method": method,
            **_evaluate(int8, tokenizer, test, config),
            "size_mb": round(size_mb, 3),
            "quantize_seconds": round(quantize_seconds, 2),
        }
        results.append(row)
    static = [r for r in results if r["method"] != DYNAMIC] or results
    best = max(static, key=lambda r: (r["bleu"], r["chrf"]))["method"] if static else None
    return {
        "model": str(config.model_dir),
        "test_sentences": len(test),
        "beam": config.beam,
        "calibration_sentences": len(calib_sources),
        "outlier_scale": config.outlier_scale,
        "fp32": fp32,
        "int8": results,
        "best": best,
    }


def to_markdown(report: dict[str, Any]) -> str:
    fp32 = report["fp32"]
    headers = [
        "model",
        "BLEU",
        "chrF",
        "EOS failures",
        "len ratio",
        "size MB",
        "size x",
        "translate s",
    ]
    rows = [
        [
            "FP32",
            fp32["bleu"],
            fp32["chrf"],
            f"{fp32['eos_failure_rate']:.1%}",
            f"{fp32['length_ratio']:.3f}",
            f"{fp32['size_mb']:.1f}",
            "1.00",
            f"{fp32['translate_seconds']:.1f}",
        ]
    ]
    for r in report["int8"]:
        name = f"INT8 {r['method']}" + (" (best)" if r["method"] == report["best"] else "")
        rows.append(
            [
                name,
                r["bleu"],
                r["chrf"],
                f"{r['eos_failure_rate']:.1%}",
                f"{r['length_ratio']:.3f}",
                f"{r['size_mb']:.1f}",
                f"{r['size_mb'] / fp32['size_mb']:.2f}",
                f"{r['translate_seconds']:.1f}",
            ]
        )
    title = (
        f"{report['test_sentences']} test sentences, beam {report['beam']}, calibration on "
        f"{report['calibration_sentences']} training sentences"
    )
    if report.get("outlier_scale") is not None:
        title += (
            f", one feed-forward unit per layer scaled x{report['outlier_scale']:g} "
            "(FP32 function unchanged)"
        )
    title += ".\n\n"
    return title + markdown_table(headers, rows)


def write_reports(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """``nmt.md``, ``nmt.json`` (hypotheses dropped) and ``nmt_bleu.png`` in ``out_dir``."""
    slim = {
        **report,
        "fp32": {k: v for k, v in report["fp32"].items() if k != "hypotheses"},
        "int8": [{k: v for k, v in r.items() if k != "hypotheses"} for r in report["int8"]],
    }
    methods = [r["method"] for r in report["int8"]]
    return [
        write_json(out_dir / "nmt.json", slim),
        write_text_atomic(out_dir / "nmt.md", to_markdown(report)),
        bar_chart_png(
            out_dir / "nmt_bleu.png",
            methods,
            [r["bleu"] for r in report["int8"]],
            title="INT8 BLEU by calibration method",
            ylabel="BLEU",
            reference=report["fp32"]["bleu"],
        ),
    ]
