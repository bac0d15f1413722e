"""One QAT recipe on one shipped classification task: dev and test accuracy of its INT8 model.

Runs the classification evaluation's own QAT (fake-quant fine-tuning from the cached FP32
fine-tune, distillation, conversion; cached by recipe like the demo's) and prints one JSON line
with FP32, dynamic INT8 and QAT INT8 accuracy on the dev and test splits. Recipes are chosen on
dev (``bench/results/classify_qat_recipe.md``); test is reported alongside.

Usage: ``python bench/qat_recipe_probe.py TASK LEARNING_RATE EPOCHS DISTILL_WEIGHT TEMPERATURE
[--seed N] [--per-channel] [--start pretrained] [--cache-dir models/classify-cache]``
(``DISTILL_WEIGHT`` 0: labels only; ``--seed``: the QAT run's seed, batch order and dropout,
default 0; ``--per-channel``: weight scales per output channel, the dynamic baseline's
granularity, instead of Q8BERT's per tensor; ``--start pretrained``: QAT from the pre-trained
encoder with a new head, Q8BERT's recipe, instead of from the FP32 fine-tune). Dynamic INT8 is
scored twice: as the evaluation runs it (per-channel weight scales, ``dyn``) and with one weight
scale per tensor (``dyn_per_tensor``), the granularity of Q8BERT's QAT and of its dynamic baseline.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

from eightbit.config import DYNAMIC, QuantConfig
from eightbit.data.classification import TASKS, load_task
from eightbit.evaluate import classify
from eightbit.evaluate.metrics import accuracy
from eightbit.models.bert import minilm_dir, predict
from eightbit.training.classifier import DEFAULT_FINETUNE_CONFIG, finetune_cached
from eightbit.training.distill import DistillConfig
from eightbit.transform import quantize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("task", choices=list(TASKS))
    parser.add_argument("learning_rate", type=float)
    parser.add_argument("epochs", type=int)
    parser.add_argument("distill_weight", type=float)
    parser.add_argument("temperature", type=float)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-channel", action="store_true")
    parser.add_argument("--start", choices=classify.QAT_STARTS, default=classify.FINETUNED)
    parser.add_argument("--cache-dir", default="models/classify-cache")
    args = parser.parse_args()
    train, dev, test = (load_task(args.task, s) for s in ("train", "dev", "test"))
    model, tokenizer, path = finetune_cached(
        args.task, args.cache_dir, None, DEFAULT_FINETUNE_CONFIG, train, dev
    )
    model.eval()
    task = classify.ClassifyTask(args.task, model, tokenizer, train, test, path.name, minilm_dir())
    qat_finetune = replace(
        classify.DEFAULT_QAT_FINETUNE,
        learning_rate=args.learning_rate,
        epochs=args.epochs,
        seed=args.seed,
        progress=False,
    )
    distill = (
        None if args.distill_weight == 0 else DistillConfig(args.distill_weight, args.temperature)
    )
    config = replace(
        classify.DEFAULT_EVAL_CONFIG,
        cache_dir=args.cache_dir,
        progress=False,
        qat=replace(classify.DEFAULT_EVAL_CONFIG.qat, per_channel=args.per_channel),
        qat_finetune=qat_finetune,
        qat_distill=distill,
        qat_start=args.start,
    )

    def score(m, split):
        return round(
            100 * accuracy(predict(m, tokenizer, split.texts, 32, 128, False), split.labels), 2
        )

    result = {"task": args.task, "lr": args.learning_rate, "epochs": args.epochs,
              "weight": args.distill_weight, "T": args.temperature, "seed": args.seed,
              "per_channel": args.per_channel, "start": args.start}  # fmt: skip
    result.update(fp32_dev=score(model, dev), fp32_test=score(model, test))
    for name, per_channel in (("dyn", True), ("dyn_per_tensor", False)):
        dynamic = quantize(
            model, None, QuantConfig(method=DYNAMIC, per_channel=per_channel), progress=False
        )
        result.update({f"{name}_dev": score(dynamic, dev), f"{name}_test": score(dynamic, test)})
    start = time.perf_counter()
    int8, check = classify._qat_model(task, test, config)
    result["qat_seconds"] = round(time.perf_counter() - start)
    result.update(qat_dev=score(int8, dev), qat_test=score(int8, test), **check)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
