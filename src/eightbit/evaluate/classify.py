"""FP32 vs INT8 text classification: dynamic PTQ, static PTQ per calibration method, Q8BERT QAT.

Q8BERT (Zafrir et al. 2019) reports INT8 within 1% of FP32 with quantization-aware training and
clearly worse post-training dynamic quantization. For every task this module scores the FP32
model, then each INT8 variant on the same test split:

- ``dynamic``: weights int8, activation ranges measured on every call;
- one static variant per calibration method (ranges from training texts, padding masked out);
- ``qat``: fake-quant fine-tuning (``prepare_qat``) from the FP32 model, or from the pre-trained
  encoder as Q8BERT does (``qat_start``), optionally distilling the FP32 model's logits into the
  fake-quant one (``qat_distill``), then ``convert``; the
  converted model's logits are compared with the fake-quant model's on one test batch
  (``qat_max_abs_diff``, ``qat_prediction_agreement``).

Every INT8 row is also compared with FP32 text by text: ``fp32_agreement`` (share of identical
predictions), ``broken`` / ``fixed`` (texts FP32 got right and INT8 wrong, and the reverse) and
``p_vs_fp32``, McNemar's exact p-value (large: the accuracy difference is within chance).

Report schema: ``{"tasks": [{"task", "fp32": {"accuracy", "balanced_accuracy", "size_mb"},
"int8": [{"method", "accuracy", "balanced_accuracy", "size_mb", "fp32_agreement", "broken",
"fixed", "p_vs_fp32"}, ...]}]}``.
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from eightbit.atomic import write_text_atomic
from eightbit.calibration import CALIBRATION_METHODS
from eightbit.config import DYNAMIC, QATConfig, QuantConfig
from eightbit.data.classification import TASKS, LabeledSplit, load_task
from eightbit.evaluate.metrics import accuracy, balanced_accuracy, paired_comparison
from eightbit.evaluate.report import bar_chart_png, markdown_table, write_json
from eightbit.evaluate.size import directory_size_mb
from eightbit.io import METADATA_FILE, read_metadata
from eightbit.models.bert import (
    base_checkpoint,
    calibration_batches,
    calibration_run,
    load_classifier,
    predict_logits,
    save_classifier,
)
from eightbit.training.classifier import (
    DEFAULT_FINETUNE_CONFIG,
    FinetuneConfig,
    data_fingerprint,
    finetune_cached,
    key_hash,
    new_classifier,
    ranges_frozen,
    train_classifier,
    training_settings,
    weights_fingerprint,
)
from eightbit.training.distill import DistillConfig
from eightbit.transform import convert, prepare_qat, quantize

log = logging.getLogger(__name__)

QAT = "qat"
ALL_METHODS = (DYNAMIC, *CALIBRATION_METHODS, QAT)
DEFAULT_QAT_CONFIG = QATConfig()
# QAT starts from the fine-tuned FP32 weights: one epoch adapts them to int8, the FP32 model
# teaching its fake-quant copy (soft targets and labels, equal weight). On the topics dev split
# lr 5e-5 and 2e-5 tied in accuracy, 5e-5 had the lower dev log-loss
# (bench/results/classify_qat_recipe.md)
DEFAULT_QAT_FINETUNE = FinetuneConfig(epochs=1, learning_rate=5e-5)
DEFAULT_QAT_DISTILL = DistillConfig(weight=0.5, temperature=2.0)
TASK_NAMES = tuple(TASKS)
# where QAT's fake-quant fine-tuning starts: the task's FP32 fine-tune, or the pre-trained
# encoder it was fine-tuned from, with a new head (Q8BERT's recipe)
FINETUNED, PRETRAINED = "finetuned", "pretrained"
QAT_STARTS = (FINETUNED, PRETRAINED)


@dataclass(frozen=True)
class ClassifyTask:
    """One task to evaluate: its FP32 fine-tuned model and the data around it."""

    name: str
    model: nn.Module
    tokenizer: Any
    train: LabeledSplit  # calibration texts and QAT fine-tuning
    test: LabeledSplit
    source: str = ""  # names the FP32 weights (a fine-tune cache entry); enables QAT caching
    base_model: Path | None = None  # the pre-trained checkpoint the FP32 model started from


@dataclass(frozen=True)
class ClassifyEvalConfig:
    """What to evaluate. ``qat`` fine-tunes with ``qat_finetune`` (keep its ``max_length``
    equal to ``max_length``), distilling the FP32 logits with ``qat_distill`` (None: labels
    only), starting from ``qat_start``: ``finetuned`` (the FP32 model) or ``pretrained`` (the
    task's ``base_model`` with a new head, seeded by ``qat_finetune.seed``); calibration texts
    are a seeded training sample."""

    methods: tuple[str, ...] = ALL_METHODS
    calibration_size: int = 600
    test_size: int | None = None
    batch_size: int = 32
    max_length: int = 128
    qat: QATConfig = DEFAULT_QAT_CONFIG
    qat_finetune: FinetuneConfig = DEFAULT_QAT_FINETUNE
    qat_distill: DistillConfig | None = DEFAULT_QAT_DISTILL
    qat_start: str = FINETUNED
    seed: int = 0
    backend: str = "auto"
    cache_dir: Path | None = None  # converted QAT models, reused when their key matches
    progress: bool = True


DEFAULT_EVAL_CONFIG = ClassifyEvalConfig()


def _scores(
    model: nn.Module, task: ClassifyTask, test: LabeledSplit, config: ClassifyEvalConfig
) -> tuple[dict[str, float], Tensor]:
    start = time.perf_counter()
    logits = predict_logits(
        model, task.tokenizer, test.texts, config.batch_size, config.max_length, config.progress
    )
    predictions = logits.argmax(dim=-1).tolist()
    scores = {
        "accuracy": round(accuracy(predictions, test.labels), 4),
        "balanced_accuracy": round(balanced_accuracy(predictions, test.labels), 4),
        "predict_seconds": round(time.perf_counter() - start, 2),
    }
    return scores, predictions


def _versus_fp32(
    fp32_predictions: list[int], predictions: list[int], labels: Sequence[int]
) -> dict[str, Any]:
    """Paired comparison with the FP32 model on the same test texts (McNemar's exact test)."""
    c = paired_comparison(fp32_predictions, predictions, labels)
    return {
        "fp32_agreement": round(c.agreement, 4),
        "broken": c.broken,
        "fixed": c.fixed,
        "p_vs_fp32": round(c.p_value, 4),
    }


def _size_mb(model: nn.Module, tokenizer: Any, int8: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model"
        if int8:
            save_classifier(model, tokenizer, path)
        else:
            model.save_pretrained(str(path))
        return round(directory_size_mb(path), 3)


def _calibration_texts(train: LabeledSplit, size: int, seed: int) -> list[str]:
    if size <= 0 or not train.texts:
        raise ValueError("the calibration set is empty; expected a positive calibration size")
    return random.Random(seed).sample(list(train.texts), min(size, len(train.texts)))


def _qat_cache_key(task: ClassifyTask, config: ClassifyEvalConfig) -> dict[str, Any]:
    return {
        "task": task.name,
        "fp32_source": task.source,
        "start": config.qat_start,
        # from the pre-trained start, its weights shape the QAT model: the fine-tune named by
        # fp32_source need not have come from the same checkpoint
        "base_model_weights": (
            weights_fingerprint(task.base_model)
            if config.qat_start == PRETRAINED and task.base_model is not None
            else None
        ),
        "qat": asdict(config.qat),
        "settings": training_settings(config.qat_finetune),
        "distill": None if config.qat_distill is None else asdict(config.qat_distill),
        "train_data": data_fingerprint(task.train),
        "backend": config.backend,
        "probe": config.batch_size,
    }


def _qat_model(
    task: ClassifyTask, test: LabeledSplit, config: ClassifyEvalConfig
) -> tuple[nn.Module, dict[str, float]]:
    """The converted QAT model and its check, from the cache or trained (:func:`_train_qat`)."""
    if config.cache_dir is None or not task.source:
        return _train_qat(task, test, config)
    digest = key_hash(_qat_cache_key(task, config))
    path = Path(config.cache_dir) / f"{task.name}-qat-{digest[:16]}"
    if (path / METADATA_FILE).is_file():
        extra = read_metadata(path)["extra"]
        if extra.get("qat_cache_key") == digest:
            log.info("reusing the QAT %s model in %s", task.name, path)
            return load_classifier(path)[0], extra["qat_check"]
    int8, check = _train_qat(task, test, config)
    save_classifier(int8, task.tokenizer, path, extra={"qat_cache_key": digest, "qat_check": check})
    return int8, check


def _train_qat(
    task: ClassifyTask, test: LabeledSplit, config: ClassifyEvalConfig
) -> tuple[nn.Module, dict[str, float]]:
    """Fake-quant fine-tuning (from ``config.qat_start``), then the real INT8 model, and how
    closely the INT8 logits follow the fake-quant logits on one batch of test texts."""
    teacher = None
    if config.qat_distill is not None:
        teacher = predict_logits(
            task.model.eval(),
            task.tokenizer,
            task.train.texts,
            config.batch_size,
            config.qat_finetune.max_length,
            progress=False,
        )
    start = task.model
    if config.qat_start == PRETRAINED:
        start, _ = new_classifier(task.base_model, task.train.label_names, config.qat_finetune.seed)
    qat = prepare_qat(start, config.qat)
    train_classifier(
        qat,
        task.tokenizer,
        task.train,
        config.qat_finetune,
        teacher=teacher,
        distill=config.qat_distill,
    )
    int8 = convert(qat, backend=config.backend)
    probe = list(test.texts[: config.batch_size])
    if not probe:
        return int8, {}
    with ranges_frozen(qat):  # the converted model has fixed ranges; so must the reference
        fake = predict_logits(
            qat, task.tokenizer, probe, config.batch_size, config.max_length, False
        )
    real = predict_logits(int8, task.tokenizer, probe, config.batch_size, config.max_length, False)
    agree = (fake.argmax(-1) == real.argmax(-1)).float().mean()
    return int8, {
        "qat_max_abs_diff": round(float((fake - real).abs().max()), 6),
        "qat_logit_max_abs": round(float(fake.abs().max()), 4),
        "qat_prediction_agreement": round(float(agree), 4),
    }


def evaluate_task(task: ClassifyTask, config: ClassifyEvalConfig) -> dict[str, Any]:
    """The report entry of one task: FP32 and every INT8 method in ``config.methods``."""
    unknown = [m for m in config.methods if m not in ALL_METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; expected some of {', '.join(ALL_METHODS)}")
    if config.qat_start not in QAT_STARTS:
        raise ValueError(f"unknown QAT start {config.qat_start!r}; expected one of {QAT_STARTS}")
    if QAT in config.methods and config.qat_start == PRETRAINED and task.base_model is None:
        raise ValueError(f"task {task.name}: QAT from the pre-trained model needs its base_model")
    test = task.test
    if config.test_size:
        test = LabeledSplit(
            test.texts[: config.test_size], test.labels[: config.test_size], test.label_names
        )
    model = task.model.eval()
    fp32, fp32_predictions = _scores(model, task, test, config)
    fp32["size_mb"] = _size_mb(model, task.tokenizer, int8=False)
    calib = None
    if any(m in CALIBRATION_METHODS for m in config.methods):
        texts = _calibration_texts(task.train, config.calibration_size, config.seed)
        calib = calibration_batches(task.tokenizer, texts, config.batch_size, config.max_length)
    rows = []
    for method in config.methods:
        log.info("%s: INT8 %s", task.name, method)
        start = time.perf_counter()
        extra: dict[str, Any] = {}
        if method == QAT:
            int8, extra = _qat_model(task, test, config)
        else:
            int8 = quantize(
                model,
                None if method == DYNAMIC else calib,
                QuantConfig(method=method, backend=config.backend),
                run=calibration_run,
                progress=config.progress,
            )
        seconds = round(time.perf_counter() - start, 2)
        scores, predictions = _scores(int8, task, test, config)
        scores.update(_versus_fp32(fp32_predictions, predictions, test.labels))
        size = _size_mb(int8, task.tokenizer, int8=True)
        rows.append(
            {"method": method, **scores, "size_mb": size, "quantize_seconds": seconds, **extra}
        )
    return {
        "task": task.name,
        "labels": list(test.label_names),
        "test_examples": len(test.texts),
        "train_examples": len(task.train.texts),
        "fp32": fp32,
        "int8": rows,
    }


def run_classify_eval(
    tasks: Sequence[ClassifyTask], config: ClassifyEvalConfig = DEFAULT_EVAL_CONFIG
) -> dict[str, Any]:
    """Evaluate every task; the whole report (see the module docstring for its schema)."""
    return {
        "calibration_size": config.calibration_size,
        "max_length": config.max_length,
        "tasks": [evaluate_task(task, config) for task in tasks],
    }


def run_classify_demo(
    cache_dir: str | Path,
    base_model: str | Path | None = None,
    task_names: Sequence[str] = TASK_NAMES,
    finetune: FinetuneConfig = DEFAULT_FINETUNE_CONFIG,
    config: ClassifyEvalConfig = DEFAULT_EVAL_CONFIG,
    load: Callable[[str, str], LabeledSplit] = load_task,
) -> dict[str, Any]:
    """The real experiment: fine-tune FP32 models (or reuse them from ``cache_dir``) on the
    shipped corpora, then :func:`run_classify_eval` on their test splits.

    ``load(task, split)`` provides the data (default: the shipped corpora). Converted QAT
    models are cached in ``cache_dir`` too unless ``config.cache_dir`` says otherwise.
    """
    if config.cache_dir is None:
        config = replace(config, cache_dir=Path(cache_dir))
    base = base_checkpoint(base_model)
    tasks = []
    for name in task_names:
        train, dev, test = (load(name, split) for split in ("train", "dev", "test"))
        model, tokenizer, path = finetune_cached(name, cache_dir, base, finetune, train, dev)
        tasks.append(ClassifyTask(name, model, tokenizer, train, test, path.name, base))
    return run_classify_eval(tasks, config)


def to_markdown(report: dict[str, Any]) -> str:
    """One table per task: accuracy, balanced accuracy (percent), size and size ratio."""
    headers = [
        "model",
        "accuracy %",
        "balanced acc. %",
        "vs FP32 %",
        "same as FP32 %",
        "broken / fixed",
        "McNemar p",
        "size MB",
        "size x",
    ]
    parts = []
    for entry in report["tasks"]:
        fp32 = entry["fp32"]
        rows = [
            [
                "FP32",
                100 * fp32["accuracy"],
                100 * fp32["balanced_accuracy"],
                100.0,
                "",
                "",
                "",
                fp32["size_mb"],
                "1.00",
            ]
        ]
        for r in entry["int8"]:
            rows.append(
                [
                    f"INT8 {r['method']}",
                    100 * r["accuracy"],
                    100 * r["balanced_accuracy"],
                    100 * r["accuracy"] / max(fp32["accuracy"], 1e-12),
                    *_paired_cells(r),
                    r["size_mb"],
                    f"{r['size_mb'] / max(fp32['size_mb'], 1e-12):.2f}",
                ]
            )
        parts.append(
            f"### {entry['task']} ({entry['test_examples']} test examples, "
            f"{len(entry['labels'])} classes)\n\n" + markdown_table(headers, rows)
        )
    return "\n".join(parts)


def _paired_cells(row: dict[str, Any]) -> list[Any]:
    """The FP32-comparison cells of one INT8 row ("-" in reports written before they existed)."""
    if "fp32_agreement" not in row:
        return ["-", "-", "-"]
    return [
        100 * row["fp32_agreement"],
        f"{row['broken']} / {row['fixed']}",
        f"{row['p_vs_fp32']:.2g}",
    ]


def write_reports(report: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """``classify.json``, ``classify.md`` and one ``classify_<task>.png`` per task."""
    out = Path(out_dir)
    paths = [
        write_json(out / "classify.json", report),
        write_text_atomic(out / "classify.md", to_markdown(report)),
    ]
    for entry in report["tasks"]:
        paths.append(
            bar_chart_png(
                out / f"classify_{entry['task']}.png",
                [r["method"] for r in entry["int8"]],
                [100 * r["accuracy"] for r in entry["int8"]],
                title=f"{entry['task']}: INT8 accuracy by method",
                ylabel="accuracy %",
                reference=100 * entry["fp32"]["accuracy"],
                zoom=True,
            )
        )
    return paths
