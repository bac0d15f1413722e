"""Which batching defaults should ``translate()`` have? Measure them on the shipped model.

Times the eightbit engine on the INT8 shipped model (``models/marian-en-es``, kl-independent
calibration, as ``eightbit bench translate``) over the first test sentences, greedy and beam 4,
for a small grid of ``batch_tokens`` x ``max_sentences`` x workers (the threads shared out:
``workers`` x ``threads // workers``) x worker kind (``auto`` unless given: ``process`` or
``thread`` compare forked workers with threads; ``kept``: forked workers of one ``Translator``
kept across the repeats, started by an untimed warm-up, against ``process``'s forks per call).
Every configuration runs once per repeat,
interleaved (repeat 1 of all, then repeat 2 of all), so slow phases of a shared machine hit every
configuration alike; the table reports each one's best repeat in tokens/s (counted as in
``eightbit bench translate``) and its ratio to the fastest configuration of that beam.

Usage: ``python bench/batching_grid.py [--sentences 300] [--threads 2] [--beams 1 4]
[--repeats 2] [--model DIR] [--grid TOKENS,SENTENCES,WORKERS[,KIND] ...] [--json PATH]
[--markdown PATH]``. ``--model``: an INT8 directory saved by ``eightbit quantize`` (default:
calibrate the shipped FP32 checkpoint first, about 2 minutes).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from eightbit.bench.translate import generated_tokens
from eightbit.bench.translate_workloads import int8_model, shipped_workload
from eightbit.data.parallel import WORKER_KINDS
from eightbit.models.marian import Translator, load_marian, load_translation_model, translate

MODEL = Path(__file__).resolve().parents[1] / "models" / "marian-en-es"
# workers 1 x 2 threads against 2 x 1, the sentence cap around the default, the token budget
Config = tuple[int, int, int, str]  # batch tokens, max sentences, workers, worker kind
KEPT = "kept"  # a Translator's workers, kept across calls
GRID: tuple[Config, ...] = (
    *((4096, sentences, workers, "auto") for workers in (1, 2) for sentences in (16, 32, 64, 128)),
    (2048, 64, 2, "auto"),
    (8192, 128, 2, "auto"),
)


def _config(text: str) -> Config:
    parts = text.split(",")
    kind = parts.pop() if len(parts) == 4 else "auto"
    try:
        tokens, sentences, workers = (int(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected TOKENS,SENTENCES,WORKERS[,KIND], got {text!r}"
        ) from None
    if min(tokens, sentences, workers) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    if kind not in (*WORKER_KINDS, KEPT):
        raise argparse.ArgumentTypeError(
            f"KIND: expected one of {', '.join((*WORKER_KINDS, KEPT))}"
        )
    return tokens, sentences, workers, kind


def measure(args: argparse.Namespace) -> list[dict]:
    workload = shipped_workload(MODEL, args.sentences)
    if args.model:
        model, tokenizer = load_translation_model(args.model)
    else:
        fp32, tokenizer = load_marian(MODEL)
        model = int8_model(workload, fp32, tokenizer, args.calibration_size, progress=False)
    sentences = workload.sentences
    torch.set_num_threads(args.threads)
    max_positions = model.config.max_position_embeddings
    rows = []
    kept = {
        workers: Translator(model, tokenizer, workers=workers, worker_kind="process")
        for _, _, workers, kind in args.grid
        if kind == KEPT
    }
    for beam in args.beams:
        translate(model, tokenizer, sentences[:4], beam=beam, progress=False)  # warm-up
        for translator in kept.values():
            translator.translate(sentences[:4], beam=beam, progress=False)  # starts its workers
        best: dict[Config, float] = {}
        tokens = 0
        for _ in range(args.repeats):
            for config in args.grid:
                batch_tokens, max_sentences, workers, kind = config
                options = {
                    "beam": beam,
                    "batch_tokens": batch_tokens,
                    "max_sentences": max_sentences,
                    "progress": False,
                }
                start = time.perf_counter()
                if kind == KEPT:
                    outputs = kept[workers].translate(sentences, **options)
                else:
                    outputs = translate(
                        model, tokenizer, sentences, workers=workers, worker_kind=kind, **options
                    )
                seconds = time.perf_counter() - start
                tokens = sum(generated_tokens(tokenizer, sentences, outputs, max_positions))
                best[config] = min(best.get(config, float("inf")), seconds)
        fastest = min(best.values())
        for (batch_tokens, max_sentences, workers, kind), seconds in best.items():
            rows.append(
                {
                    "beam": beam,
                    "batch_tokens": batch_tokens,
                    "max_sentences": max_sentences,
                    "workers": workers,
                    "threads_per_worker": max(1, args.threads // workers),
                    "worker_kind": kind,
                    "seconds": round(seconds, 3),
                    "tokens_per_s": round(tokens / seconds, 1),
                    "vs_fastest": round(fastest / seconds, 3),
                }
            )
    for translator in kept.values():
        translator.close()
    return rows


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"Batching grid: eightbit engine, shipped model INT8 (kl-independent), first "
        f"{args.sentences} test sentences, {args.threads} threads in total, best of "
        f"{args.repeats} interleaved repeats. tokens/s as in `eightbit bench translate`.",
        "",
        "| beam | batch tokens | max sentences | workers x threads | kind | tokens/s "
        "| vs fastest |",
        "|---:|---:|---:|---:|---|---:|---:|",
    ]
    lines += [
        f"| {r['beam']} | {r['batch_tokens']} | {r['max_sentences']} | {r['workers']} x "
        f"{r['threads_per_worker']} | {r['worker_kind']} | {r['tokens_per_s']:.1f} | "
        f"{r['vs_fastest']:.2f}x |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=300, help="first N test sentences")
    parser.add_argument("--threads", type=int, default=2, help="threads in total (default 2)")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", help="INT8 model directory (default: calibrate the shipped)")
    parser.add_argument("--calibration-size", type=int, default=600)
    parser.add_argument("--grid", type=_config, nargs="+", default=list(GRID))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    rows = measure(args)
    table = markdown(rows, args)
    print(table, end="")
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "results": rows}, indent=1))
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
