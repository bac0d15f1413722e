"""Classification benchmark: BERT-family classifiers, FP32 and INT8 engines in one run.

Models: all-MiniLM-L6-v2 (the shipped encoder with a fresh 2-class head) and a BERT-base sized
classifier with random weights (speed does not depend on the values). Inputs: random token ids
(fixed seed), full attention mask. Engines: torch FP32; eightbit INT8 static (calibrated on a few
random batches; 8-bit and 7-bit ``reduce_range`` activations) and dynamic; ONNX Runtime FP32 and
its dynamic INT8 quantization of an export of the same model. Time: the median of repeated
calls after warm-up, in milliseconds per batch.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import eightbit
from eightbit.bench.ort_classifier import (
    export_classifier,
    ort_classifier_runner,
    quantize_onnx_dynamic,
)
from eightbit.bench.timing import machine_info, median_seconds
from eightbit.encoder import Runner, classifier_runner
from eightbit.kernels import resolve_backend
from eightbit.models.bert import calibration_run, load_encoder_classifier
from eightbit.progress import progress as progress_bar

log = logging.getLogger(__name__)

BATCHES = (1, 8)
SEQ_LEN = 128
SEED = 0
CALIBRATION_BATCH_SIZE = 4
DEFAULT_METHOD = eightbit.QuantConfig().method
GOAL_MODEL, GOAL_BATCH, GOAL_VS_TORCH = "bert-base", 8, 1.8
TORCH_FP32 = ("torch", "fp32")
ORT_INT8 = ("onnxruntime", "int8-dynamic")
# eightbit static variants: name -> QuantConfig overrides (the default calibration method)
STATIC_VARIANTS: dict[str, dict[str, Any]] = {
    "int8-static": {},
    "int8-static-7bit": {"reduce_range": True},
}

ModelFactory = Callable[[], nn.Module]


def minilm_classifier() -> nn.Module:
    """The shipped all-MiniLM-L6-v2 encoder with a fresh 2-class head."""
    torch.manual_seed(SEED)
    return load_encoder_classifier(None, num_labels=2)[0]


def bert_base_classifier() -> nn.Module:
    """BERT-base sized (hidden 768, 12 layers, 12 heads, FFN 3072) classifier, random weights."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(SEED)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        num_labels=2,
    )
    return BertForSequenceClassification(config).eval()


MODELS: dict[str, ModelFactory] = {"minilm": minilm_classifier, "bert-base": bert_base_classifier}


@dataclass(frozen=True)
class ClassifyResult:
    model: str
    engine: str
    precision: str
    batch: int
    seq_len: int
    ms: float
    vs_torch_fp32: float  # torch FP32 time / this time (> 1: faster than torch FP32)
    vs_ort_int8: float  # ONNX Runtime INT8 time / this time (> 1: faster than ORT INT8)


def random_inputs(vocab_size: int, batch: int, seq_len: int, seed: int = SEED) -> dict[str, Tensor]:
    """Random token ids (seeded) with a full attention mask."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (batch, seq_len), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def int8_models(
    model: nn.Module, calibration: list[dict[str, Tensor]], backend: str, method: str
) -> dict[str, nn.Module]:
    """eightbit INT8 versions of ``model``: static (one calibration per variant, with
    ``method``) and dynamic."""
    models = {
        name: eightbit.quantize(
            model,
            calibration,
            eightbit.QuantConfig(method=method, backend=backend, **overrides),
            run=calibration_run,
            progress=False,
        )
        for name, overrides in STATIC_VARIANTS.items()
    }
    models["int8-dynamic"] = eightbit.quantize(
        model, None, eightbit.QuantConfig(method="dynamic", backend=backend)
    )
    return models


def _timed(logits: Runner, inputs: dict[str, Tensor]) -> Callable[[], object]:
    def run() -> object:
        with torch.inference_mode():
            return logits(inputs)

    return run


def _engines(
    model: nn.Module,
    calibration: list[dict[str, Tensor]],
    backend: str,
    method: str,
    threads: int,
    onnx_dir: Path,
) -> dict[tuple[str, str], Callable[[dict[str, Tensor]], Callable[[], object]]]:
    """(engine, precision) -> a function from a batch of inputs to a timed zero-arg callable."""
    engines: dict[tuple[str, str], Callable[[dict[str, Tensor]], Callable[[], object]]] = {
        TORCH_FP32: partial(_timed, lambda batch: model(**batch).logits)  # Hugging Face forward
    }
    for precision, int8 in int8_models(model, calibration, backend, method).items():
        # what prediction runs: the encoder path where the model has one
        engines[("eightbit", precision)] = partial(_timed, classifier_runner(int8))
    fp32_onnx = export_classifier(model, calibration[0], onnx_dir / "fp32.onnx")
    int8_onnx = quantize_onnx_dynamic(fp32_onnx, onnx_dir / "int8-dynamic.onnx")
    engines[("onnxruntime", "fp32")] = lambda x: ort_classifier_runner(fp32_onnx, x, threads)
    engines[ORT_INT8] = lambda x: ort_classifier_runner(int8_onnx, x, threads)
    return engines


def bench_model(
    name: str,
    model: nn.Module,
    batches: Iterable[int],
    seq_len: int,
    backend: str,
    method: str,
    threads: int,
    calibration_batches: int,
    repeats: int,
) -> list[ClassifyResult]:
    """Every engine on every batch size for one model."""
    vocab = model.config.vocab_size
    calibration = [
        random_inputs(vocab, CALIBRATION_BATCH_SIZE, seq_len, SEED + 1 + i)
        for i in range(calibration_batches)
    ]
    with tempfile.TemporaryDirectory(prefix="eightbit-onnx-") as onnx_dir:
        engines = _engines(model, calibration, backend, method, threads, Path(onnx_dir))
        results = []
        for batch in batches:
            inputs = random_inputs(vocab, batch, seq_len)
            ms = {
                key: 1e3 * median_seconds(make(inputs), repeats=repeats)
                for key, make in engines.items()
            }
            log.info(
                "%s batch %d: %s", name, batch, {" ".join(k): round(v, 2) for k, v in ms.items()}
            )
            results += [
                ClassifyResult(
                    name, engine, precision, batch, seq_len, t, ms[TORCH_FP32] / t, ms[ORT_INT8] / t
                )
                for (engine, precision), t in ms.items()
            ]
    return results


def run_classify_benchmark(
    models: Iterable[str] | Mapping[str, ModelFactory] = tuple(MODELS),
    batches: tuple[int, ...] = BATCHES,
    seq_len: int = SEQ_LEN,
    threads: int = 2,
    backend: str = "auto",
    method: str = DEFAULT_METHOD,
    calibration_batches: int = 2,
    repeats: int = 5,
    progress: bool = True,
) -> dict[str, Any]:
    """Time every engine on every model and batch size; returns the JSON-ready report.

    ``models``: names from :data:`MODELS`, or a mapping of names to factories of FP32
    Hugging Face sequence classifiers.
    """
    import onnxruntime  # noqa: F401  (fail before any work when the benchmark extra is missing)

    torch.set_num_threads(threads)
    backend = resolve_backend(backend)
    factories = models if isinstance(models, Mapping) else {n: MODELS[n] for n in models}
    results: list[ClassifyResult] = []
    for name, factory in progress_bar(list(factories.items()), "classify bench", "model", progress):
        results += bench_model(
            name,
            factory(),
            batches,
            seq_len,
            backend,
            method,
            threads,
            calibration_batches,
            repeats,
        )
    return {
        "benchmark": "classify",
        "threads": threads,
        "backend": backend,
        "seq_len": seq_len,
        "calibration": {
            "method": method,
            "batches": calibration_batches,
            "batch_size": CALIBRATION_BATCH_SIZE,
        },
        "machine": machine_info("onnxruntime"),
        "results": [asdict(r) for r in results],
        "goal": goal_check(results),
    }


def goal_check(results: list[ClassifyResult]) -> dict[str, Any]:
    """Issue 6: BERT-base batch 8: eightbit INT8 >= 1.8x torch FP32 and faster than ORT INT8."""
    rows = [
        r for r in results if (r.model, r.batch, r.engine) == (GOAL_MODEL, GOAL_BATCH, "eightbit")
    ]
    return {
        r.precision: {
            "vs_torch_fp32": r.vs_torch_fp32,
            "vs_ort_int8": r.vs_ort_int8,
            "met": r.vs_torch_fp32 >= GOAL_VS_TORCH and r.vs_ort_int8 > 1.0,
        }
        for r in rows
    }


def to_markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        f"Classification benchmark: {report['threads']} threads, backend `{report['backend']}`, "
        f"sequence length {report['seq_len']}, torch {machine['torch']}, onnxruntime "
        f"{machine['onnxruntime']}. Milliseconds per batch (median), lower is better; "
        "ratios > 1 mean faster.",
        "",
        "| model | batch | engine | precision | ms | vs torch FP32 | vs ORT INT8 |",
        "|---|---:|---|---|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['engine']} | {r['precision']} | {r['ms']:.1f} "
            f"| {r['vs_torch_fp32']:.2f}x | {r['vs_ort_int8']:.2f}x |"
        )
    if report["goal"]:
        lines += [
            "",
            f"Goal ({GOAL_MODEL}, batch {GOAL_BATCH}): eightbit INT8 >= {GOAL_VS_TORCH}x torch "
            "FP32 and faster than ONNX Runtime INT8.",
            "",
        ]
        lines += [
            f"- {precision}: {g['vs_torch_fp32']:.2f}x torch FP32, {g['vs_ort_int8']:.2f}x ORT "
            f"INT8: {'met' if g['met'] else 'not met'}"
            for precision, g in report["goal"].items()
        ]
    return "\n".join(lines) + "\n"
