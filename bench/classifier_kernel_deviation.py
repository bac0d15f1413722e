"""How far do the encoder path's fused kernels move an INT8 classifier's outputs?

For each fine-tuned classifier given (``TASK=CHECKPOINT``, e.g. the demo's cache entries),
quantizes it (static minmax on 256 training texts, and dynamic), then scores the first test
texts twice: ``predict_logits`` with the default kernels (fused GELU, attention, LayerNorm) and
the same INT8 model's own Hugging Face forward. Prints the predictions that differ and the
largest logit change.

Usage: ``python bench/classifier_kernel_deviation.py topics=models/classify-cache/topics-...
sentiment=models/classify-cache/sentiment-... [--texts 600]``.
"""

from __future__ import annotations

import argparse

import torch

import eightbit
import eightbit.models.bert as bert
from eightbit.data.classification import load_task


def _model_forward(model):
    return lambda batch: model(**batch).logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", metavar="TASK=CHECKPOINT")
    parser.add_argument("--texts", type=int, default=600, help="first N test texts")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| task, INT8 | texts | predictions changed | max abs logit change (logit scale) |")
    print("|---|---:|---:|---:|")
    for entry in args.models:
        task, _, path = entry.partition("=")
        model, tokenizer = bert.load_classifier(path)
        train, test = load_task(task, "train"), load_task(task, "test")
        calibration = bert.calibration_batches(tokenizer, list(train.texts)[:256])
        texts = list(test.texts)[: args.texts]
        for method in ("minmax", "dynamic"):
            config = eightbit.QuantConfig(method=method)
            batches = None if method == "dynamic" else calibration
            int8 = eightbit.quantize(model, batches, config, run=bert.calibration_run)
            fused = bert.predict_logits(int8, tokenizer, texts, progress=False)
            runner, bert.classifier_runner = bert.classifier_runner, _model_forward
            try:
                own = bert.predict_logits(int8, tokenizer, texts, progress=False)
            finally:
                bert.classifier_runner = runner
            changed = int((fused.argmax(-1) != own.argmax(-1)).sum())
            change, scale = float((fused - own).abs().max()), float(own.abs().max())
            print(f"| {task}, {method} | {len(texts)} | {changed} | {change:.3f} ({scale:.1f}) |")


if __name__ == "__main__":
    main()
