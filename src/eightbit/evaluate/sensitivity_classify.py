"""The classification task of the sensitivity analysis: a fine-tuned BERT-family sequence
classifier scored by dev accuracy in percent (so budgets are in percentage points).

The dev examples come from the task's dev split, or, when it has none, from a stratified,
seeded part of the training split held out for it (calibration texts are then drawn from the
rest of the training split only).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from eightbit.data.classification import LabeledSplit
from eightbit.errors import EightbitError
from eightbit.evaluate.metrics import accuracy, balanced_accuracy
from eightbit.evaluate.sensitivity import SensitivityTask, dev_sample
from eightbit.models.bert import (
    calibration_batches,
    calibration_run,
    check_checkpoint,
    load_encoder_classifier,
    predict_logits,
)
from eightbit.models.common import ModelLoadError
from eightbit.models.family import CLASSIFICATION, has_classification_head, label_names, read_config

HELD_OUT_FRACTION = 0.1
DEFAULT_CALIBRATION_SIZE = 600


def held_out(train: LabeledSplit, fraction: float, seed: int) -> tuple[LabeledSplit, LabeledSplit]:
    """``(rest, held_out)``: ``fraction`` of every class (at least one example of a class with
    two or more) moved out of ``train``, seeded; both keep ``train``'s order."""
    chosen: set[int] = set()
    for cls in sorted(set(train.labels)):
        members = [i for i, y in enumerate(train.labels) if y == cls]
        random.Random(seed * 1000 + cls).shuffle(members)
        count = round(len(members) * fraction) or (1 if len(members) > 1 else 0)
        chosen.update(members[:count])

    def part(keep: bool) -> LabeledSplit:
        index = [i for i in range(len(train.texts)) if (i in chosen) != keep]
        return LabeledSplit(
            tuple(train.texts[i] for i in index),
            tuple(train.labels[i] for i in index),
            train.label_names,
        )

    return part(True), part(False)


def dev_split(
    train: LabeledSplit, dev: LabeledSplit | None, seed: int = 0
) -> tuple[LabeledSplit, LabeledSplit, str]:
    """``(calibration pool, dev examples, where the dev examples come from)``."""
    if dev is not None and dev.texts:
        return train, dev, "dev"
    rest, dev = held_out(train, HELD_OUT_FRACTION, seed)
    return rest, dev, f"train (held out {HELD_OUT_FRACTION:.0%}, seed {seed})"


@dataclass
class AccuracyScorer:
    """Dev accuracy (percent) of a classifier (the ``metric`` of :mod:`eightbit.mixed`)."""

    tokenizer: Any
    dev: list[tuple[str, int]]
    batch_size: int = 32
    max_length: int = 128

    def __call__(self, model: nn.Module) -> float:
        return self.evaluate(model)["accuracy"]

    def evaluate(self, model: nn.Module) -> dict[str, Any]:
        """Accuracy and balanced accuracy (percent), predict seconds and texts per second."""
        texts = [t for t, _ in self.dev]
        labels = [y for _, y in self.dev]
        start = time.perf_counter()
        logits = predict_logits(
            model, self.tokenizer, texts, self.batch_size, self.max_length, progress=False
        )
        seconds = time.perf_counter() - start
        predictions = logits.argmax(dim=-1).tolist()
        return {
            "accuracy": round(100 * accuracy(predictions, labels), 2),
            "balanced_accuracy": round(100 * balanced_accuracy(predictions, labels), 2),
            "predict_seconds": round(seconds, 2),
            "texts": len(texts),
            "texts_per_second": round(len(texts) / seconds, 1),
        }


def calibration_sample(texts: Sequence[str], size: int, seed: int) -> list[str]:
    """``size`` texts drawn with a fixed seed (all of them if ``size`` is larger)."""
    return random.Random(seed).sample(list(texts), min(max(size, 0), len(texts)))


def load_fine_tuned(
    directory: Path, labels: tuple[str, ...] | None = None
) -> tuple[nn.Module, Any]:
    """An FP32 classifier that already has its head (a fresh head would make the analysis
    meaningless), for ``labels`` if given, with its tokenizer."""
    check_checkpoint(directory)
    config = read_config(directory) or {}
    if not has_classification_head(config):
        raise ModelLoadError(
            f"{directory}: has no sequence-classification head; expected a fine-tuned "
            "classifier (eightbit finetune TASK)"
        )
    names = label_names(config)
    if labels is not None and names is not None and len(names) == len(labels) and names != labels:
        raise ModelLoadError(
            f"{directory}: the classifier's labels are {', '.join(names)}; the task's are "
            f"{', '.join(labels)}"
        )
    count = len(labels) if labels is not None else _num_labels(config, directory)
    return load_encoder_classifier(directory, count)


def _num_labels(config: dict[str, Any], directory: Path) -> int:
    count = config.get("num_labels", len(config.get("id2label") or {}))
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ModelLoadError(f"{directory}: config.json names no labels; expected id2label")
    return count


def classification_task(
    model_dir: str | os.PathLike[str],
    train: LabeledSplit,
    dev: LabeledSplit | None,
    calibration_texts: list[str] | None = None,
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
    dev_size: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
    max_length: int = 128,
    task_name: str = "",
) -> SensitivityTask:
    """The fine-tuned classifier in ``model_dir`` on a labeled task.

    Calibration: ``calibration_texts``, or a seeded sample of ``calibration_size`` training
    texts. Dev: a seeded sample of ``dev_size`` examples (``None``: all) of ``dev``, or of a
    part of ``train`` held out for it when ``dev`` is missing or empty.
    """
    model, tokenizer = load_fine_tuned(Path(model_dir), train.label_names)
    pool, dev, dev_source = dev_split(train, dev, seed)
    if calibration_texts is None:
        calibration_texts = calibration_sample(pool.texts, calibration_size, seed)
    if not calibration_texts:
        raise EightbitError("the calibration set is empty; expected at least one text")
    scorer = AccuracyScorer(
        tokenizer,
        dev_sample(list(zip(dev.texts, dev.labels, strict=True)), dev_size, seed),
        batch_size,
        max_length,
    )
    return SensitivityTask(
        kind=CLASSIFICATION,
        model=model,
        tokenizer=tokenizer,
        batches=calibration_batches(tokenizer, calibration_texts, batch_size, max_length),
        run=calibration_run,
        score=scorer,
        evaluate=scorer.evaluate,
        metric_key="accuracy",
        describe={
            "metric": "dev accuracy (%)",
            "classification_task": task_name,
            "dev_split": dev_source,
            "dev_examples": len(scorer.dev),
            "calibration_texts": len(calibration_texts),
            "seed": seed,
        },
    )
