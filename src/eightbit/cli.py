"""The ``eightbit`` command line: parse, make one API call, print. No logic of its own.

User mistakes (:class:`eightbit.errors.EightbitError`, missing files) print one line on stderr
and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from eightbit.atomic import write_text_atomic
from eightbit.errors import EightbitError

Handler = Callable[[argparse.Namespace], int]
DEFAULT_MODEL = "models/marian-en-es"
DEFAULT_CLASSIFY_CACHE = "models/classify-cache"
METHOD_HELP = (
    "calibration method: minmax, ema, kl-symmetric, kl-independent, kl-conjugate, "
    "percentile, mse, or dynamic"
)


class UsageError(EightbitError):
    """A command-line option or input file is not usable."""


def _read_lines(path: str) -> list[str]:
    """Non-empty lines of a UTF-8 text file, or stdin for ``-``."""
    if path == "-":
        data = sys.stdin.buffer.read()
        where = "stdin"
    else:
        file = Path(path)
        if file.is_dir():
            raise UsageError(f"{path}: is a directory; expected a text file")
        if not file.is_file():
            raise UsageError(f"{path}: no such file")
        data = file.read_bytes()
        where = path
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(f"{where}: not UTF-8 text (byte {err.start})") from None
    return [line.strip() for line in text.splitlines()]


def _write_outputs(args: argparse.Namespace, report: dict, markdown: str) -> None:
    if getattr(args, "json", None):
        write_text_atomic(args.json, json.dumps(report, indent=1) + "\n")
    if getattr(args, "markdown", None):
        write_text_atomic(args.markdown, markdown)


def _bench_kernels(args: argparse.Namespace) -> int:
    from eightbit.bench.kernels import run_kernel_benchmark, to_markdown

    report = run_kernel_benchmark(
        m_values=tuple(args.m),
        threads=args.threads,
        backend=args.backend,
        progress=not args.quiet,
    )
    markdown = to_markdown(report)
    _write_outputs(args, report, markdown)
    print(markdown, end="")
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from eightbit.config import DYNAMIC, QuantConfig
    from eightbit.models.marian import (
        calibration_batches,
        calibration_run,
        load_marian,
        save_translation_model,
    )
    from eightbit.transform import quantize

    if Path(args.output).resolve() == Path(args.model).resolve():
        raise UsageError(f"{args.output}: is the input model; choose another output directory")
    model, tokenizer = load_marian(args.model)
    config = QuantConfig(method=args.method, backend=args.backend)
    calib = None
    if args.method != DYNAMIC:
        if args.calibration_file:
            sources = [s for s in _read_lines(args.calibration_file) if s]
        else:
            from eightbit.data.corpus import load_parallel_corpus
            from eightbit.evaluate.nmt import sample_calibration_sources

            train = load_parallel_corpus("train")
            sources = sample_calibration_sources(train, args.calibration_size, args.seed)
        if not sources:
            raise UsageError("the calibration set is empty; expected at least one sentence")
        calib = calibration_batches(model, tokenizer, sources, progress=not args.quiet)
    int8 = quantize(model, calib, config, run=calibration_run, progress=not args.quiet)
    path = save_translation_model(int8, tokenizer, args.output, extra={"source": args.model})
    print(f"saved INT8 model ({args.method}) to {path}")
    return 0


def _translate(args: argparse.Namespace) -> int:
    from eightbit.models.marian import load_translation_model, translate

    model, tokenizer = load_translation_model(args.model)
    lines = _read_lines(args.input)
    outputs = translate(
        model, tokenizer, [line for line in lines if line], beam=args.beam, progress=not args.quiet
    )
    it = iter(outputs)
    text = "".join((next(it).text if line else "") + "\n" for line in lines)
    if args.output:
        write_text_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from eightbit.evaluate.metrics import translation_scores
    from eightbit.models.marian import load_translation_model, translate

    sources, references = _read_lines(args.source), _read_lines(args.reference)
    if len(sources) != len(references):
        raise UsageError(
            f"{args.source} has {len(sources)} lines but {args.reference} has "
            f"{len(references)}; expected one reference per source line"
        )
    if not sources:
        raise UsageError(f"{args.source}: empty; expected sentences to translate")
    model, tokenizer = load_translation_model(args.model)
    outputs = translate(model, tokenizer, sources, beam=args.beam, progress=not args.quiet)
    scores = translation_scores(
        [o.text for o in outputs], references, [o.hit_length_limit for o in outputs]
    )
    report = {"model": args.model, "sentences": len(sources), "beam": args.beam, **scores.__dict__}
    markdown = "".join(f"{k}: {v}\n" for k, v in report.items())
    _write_outputs(args, report, markdown)
    print(markdown, end="")
    return 0


def _finetune_config(args: argparse.Namespace):
    from eightbit.training.classifier import FinetuneConfig

    return FinetuneConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_length=args.max_length,
        max_steps=args.max_steps,
        seed=args.train_seed,
        threads=args.threads,
        device=args.device,
        progress=not args.quiet,
    )


def _finetune(args: argparse.Namespace) -> int:
    from eightbit.training.classifier import finetune_cached

    _, _, path = finetune_cached(args.task, args.cache_dir, args.base_model, _finetune_config(args))
    print(path)
    return 0


def _demo_classify(args: argparse.Namespace) -> int:
    from eightbit.evaluate.classify import (
        ClassifyEvalConfig,
        run_classify_demo,
        to_markdown,
        write_reports,
    )

    finetune = _finetune_config(args)
    config = ClassifyEvalConfig(
        qat_finetune=dataclasses.replace(
            finetune, epochs=args.qat_epochs, learning_rate=args.qat_learning_rate
        ),
        methods=tuple(args.methods),
        calibration_size=args.calibration_size,
        test_size=args.test_size,
        max_length=args.max_length,
        seed=args.seed,
        backend=args.backend,
        progress=not args.quiet,
    )
    report = run_classify_demo(args.cache_dir, args.base_model, tuple(args.tasks), finetune, config)
    write_reports(report, Path(args.output_dir))
    if args.json:
        from eightbit.evaluate.report import write_json

        write_json(args.json, report)
    print(to_markdown(report), end="")
    print(f"\nreports written to {args.output_dir}/ (classify.md, classify.json, classify_*.png)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    if args.task == "classify":
        if args.methods is None:
            from eightbit.evaluate.classify import ALL_METHODS as CLASSIFY_METHODS

            args.methods = list(CLASSIFY_METHODS)
        return _demo_classify(args)
    from eightbit.evaluate.nmt import ALL_METHODS

    if args.methods and "qat" in args.methods:
        raise UsageError("method qat needs --task classify (translation has no QAT run yet)")
    args.methods = args.methods or list(ALL_METHODS)
    if args.model == DEFAULT_MODEL and not Path(DEFAULT_MODEL).is_dir():
        # the shipped model is still being trained: show the kernel-level comparison instead
        print(
            f"eightbit demo: {DEFAULT_MODEL} is not in this checkout yet (its training is "
            "still running); running the kernel benchmark, FP32 vs INT8 linear layers, "
            "instead.",
            file=sys.stderr,
        )
        args.m, args.threads, args.markdown, args.json = [1, 32, 512], 2, None, None
        return _bench_kernels(args)
    from eightbit.data.corpus import load_parallel_corpus
    from eightbit.evaluate.nmt import NmtEvalConfig, run_nmt_eval, to_markdown, write_reports

    config = NmtEvalConfig(
        model_dir=Path(args.model),
        methods=tuple(args.methods),
        test_size=args.test_size,
        beam=args.beam,
        backend=args.backend,
        calibration_size=args.calibration_size,
        seed=args.seed,
        progress=not args.quiet,
    )
    report = run_nmt_eval(config, load_parallel_corpus("train"), load_parallel_corpus("test"))
    paths = write_reports(report, Path(args.output_dir))
    if args.json:
        from eightbit.evaluate.report import write_json

        write_json(args.json, json.loads(paths[0].read_text()))
    print(to_markdown(report), end="")
    print(f"\nreports written to {args.output_dir}/ (nmt.md, nmt.json, nmt_bleu.png)")
    return 0


def _add_common_model_options(p: argparse.ArgumentParser, *, beam: bool = True) -> None:
    p.add_argument(
        "--backend",
        default="auto",
        help="INT8 kernel backend: auto, avx2, fbgemm, reference (default auto)",
    )
    if beam:
        p.add_argument("--beam", type=int, default=1, help="beam size (default 1: greedy)")


def _add_finetune_options(p: argparse.ArgumentParser) -> None:
    from eightbit.training.classifier import FinetuneConfig

    d = FinetuneConfig()
    p.add_argument("--base-model", help="local BERT-family checkpoint (default: shipped MiniLM)")
    p.add_argument(
        "--cache-dir",
        default=DEFAULT_CLASSIFY_CACHE,
        help=f"fine-tuned FP32 checkpoints, reused when settings match "
        f"(default {DEFAULT_CLASSIFY_CACHE})",
    )
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument(
        "--learning-rate", type=float, default=d.learning_rate, help=f"default {d.learning_rate}"
    )
    p.add_argument("--max-length", type=int, default=d.max_length, help=f"default {d.max_length}")
    p.add_argument("--max-steps", type=int, default=None, help="stop after N steps")
    p.add_argument("--train-seed", type=int, default=d.seed, help=f"default {d.seed}")
    p.add_argument("--threads", type=int, default=d.threads, help=f"default {d.threads}")
    p.add_argument("--device", default=d.device, help="auto, cpu or cuda (default auto)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eightbit",
        description="Quantize FP32 Transformer models to INT8; evaluate and benchmark them.",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars or info logs")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from eightbit.data.classification import TASKS
    from eightbit.evaluate.nmt import ALL_METHODS

    p = commands.add_parser(
        "demo",
        help="the main job: quantize the shipped translation model "
        "with every method and compare with FP32",
    )
    p.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"Marian checkpoint (default {DEFAULT_MODEL})"
    )
    p.add_argument(
        "--task",
        choices=("translate", "classify"),
        default="translate",
        help="translate (Marian, BLEU) or classify (BERT-family, accuracy; default translate)",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        choices=(*ALL_METHODS, "qat"),
        metavar="METHOD",
        help="methods to compare (default: all; qat only with --task classify)",
    )
    p.add_argument(
        "--tasks",
        nargs="+",
        default=list(TASKS),
        choices=list(TASKS),
        help="classification tasks (default: all)",
    )
    p.add_argument(
        "--test-size", type=int, default=None, help="first N test sentences (default: all 1,000)"
    )
    p.add_argument("--calibration-size", type=int, default=600, help="calibration sentences")
    p.add_argument("--seed", type=int, default=0, help="calibration sample seed")
    p.add_argument("--output-dir", default="reports", help="report directory (default reports)")
    p.add_argument("--json", help="also write the JSON report to this file")
    _add_common_model_options(p)
    _add_finetune_options(p)
    p.add_argument("--qat-epochs", type=int, default=1, help="QAT fine-tuning epochs (default 1)")
    p.add_argument(
        "--qat-learning-rate", type=float, default=2e-5, help="QAT learning rate (default 2e-5)"
    )
    p.set_defaults(handler=_demo)

    p = commands.add_parser(
        "finetune", help="fine-tune an FP32 classifier on a shipped corpus (cached)"
    )
    p.add_argument("task", choices=list(TASKS), help="classification task")
    _add_finetune_options(p)
    p.set_defaults(handler=_finetune)

    p = commands.add_parser("quantize", help="FP32 Marian checkpoint -> INT8 model directory")
    p.add_argument("model", help="FP32 checkpoint directory (Hugging Face Marian format)")
    p.add_argument("output", help="directory for the INT8 model")
    p.add_argument(
        "--method",
        default="kl-independent",
        choices=ALL_METHODS,
        metavar="METHOD",
        help=METHOD_HELP + " (default kl-independent)",
    )
    p.add_argument(
        "--calibration-file",
        help="source sentences, one per line (default: a "
        "seeded sample of the shipped training set)",
    )
    p.add_argument("--calibration-size", type=int, default=600, help="calibration sentences")
    p.add_argument("--seed", type=int, default=0, help="calibration sample seed")
    _add_common_model_options(p, beam=False)
    p.set_defaults(handler=_quantize)

    p = commands.add_parser("translate", help="translate a file (or stdin) line by line")
    p.add_argument("model", help="FP32 checkpoint or INT8 model directory")
    p.add_argument(
        "input",
        nargs="?",
        default="-",
        help="UTF-8 text file, one sentence per line (default: stdin)",
    )
    p.add_argument("--output", help="write translations here (default: stdout)")
    _add_common_model_options(p)
    p.set_defaults(handler=_translate)

    p = commands.add_parser("evaluate", help="BLEU/chrF of a model on source/reference files")
    p.add_argument("model", help="FP32 checkpoint or INT8 model directory")
    p.add_argument("source", help="source sentences, one per line")
    p.add_argument("reference", help="reference translations, one per line")
    p.add_argument("--json", help="write the scores as JSON to this file")
    _add_common_model_options(p)
    p.set_defaults(handler=_evaluate)

    bench = commands.add_parser("bench", help="benchmarks (FP32 and INT8 in the same run)")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    p = bench_commands.add_parser("kernels", help="FP32 vs INT8 linear layers vs ONNX Runtime")
    p.add_argument("--json", help="write the results as JSON to this file")
    p.add_argument("--markdown", help="write the results table as Markdown to this file")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    p.add_argument(
        "--m",
        type=int,
        nargs="+",
        default=[1, 8, 32, 128, 512, 2048],
        help="rows (batch x tokens) to time",
    )
    _add_common_model_options(p, beam=False)
    p.set_defaults(handler=_bench_kernels)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eightbit`` console script."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except (EightbitError, FileNotFoundError, IsADirectoryError, PermissionError) as err:
        print(f"eightbit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eightbit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
