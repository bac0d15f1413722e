"""``eightbit bench ...``: benchmarks, FP32 and INT8 in the same run."""

from __future__ import annotations

import argparse

from eightbit.cli.common import (
    DEFAULT_MODEL,
    _add_common_model_options,
    _check_output_file,
    _write_outputs,
    positive_int,
)
from eightbit.data.parallel import WORKER_KINDS


def add_report_options(p: argparse.ArgumentParser, table: str = "table") -> None:
    """``--json`` and ``--markdown``, the outputs of every benchmark."""
    p.add_argument("--json", help="write the results as JSON to this file")
    p.add_argument("--markdown", help=f"write the results {table} as Markdown to this file")


def _check_report_outputs(args: argparse.Namespace) -> None:
    """Refuse bad ``--json`` / ``--markdown`` paths before the benchmark runs, not after."""
    _check_output_file(args.json)
    _check_output_file(args.markdown)


def _publish(args: argparse.Namespace, report: dict, markdown: str) -> int:
    """Write the requested JSON / Markdown files and print the table."""
    _write_outputs(args, report, markdown)
    print(markdown, end="")
    return 0


def _bench_kernels(args: argparse.Namespace) -> int:
    from eightbit.bench.kernels import run_kernel_benchmark, to_markdown

    _check_report_outputs(args)
    report = run_kernel_benchmark(
        m_values=tuple(args.m),
        threads=args.threads,
        backend=args.backend,
        progress=not args.quiet,
    )
    return _publish(args, report, to_markdown(report))


def _bench_classify(args: argparse.Namespace) -> int:
    from eightbit.bench.classify import run_classify_benchmark, to_markdown

    _check_report_outputs(args)
    report = run_classify_benchmark(
        models=args.models,
        batches=tuple(args.batch),
        seq_len=args.seq_len,
        threads=args.threads,
        backend=args.backend,
        method=args.method,
        calibration_batches=args.calibration_batches,
        repeats=args.repeats,
        progress=not args.quiet,
    )
    return _publish(args, report, to_markdown(report))


def _bench_translate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from eightbit.bench.translate import TranslateBenchConfig, run_translate_benchmark
    from eightbit.bench.translate_report import to_markdown

    _check_report_outputs(args)
    config = TranslateBenchConfig(
        model_dir=Path(args.model),
        models=tuple(args.models),
        engines=tuple(args.engines),
        beams=tuple(args.beams),
        threads=args.threads,
        test_size=args.test_size,
        hf_test_size=args.hf_test_size or None,
        base_sentences=args.base_sentences,
        base_source_tokens=args.base_source_tokens,
        calibration_size=args.calibration_size,
        repeats=args.repeats,
        worker_kind=args.worker_kind,
        backend=args.backend,
        progress=not args.quiet,
    )
    report = run_translate_benchmark(config)
    return _publish(args, report, to_markdown(report))


def add_bench_parsers(commands: argparse._SubParsersAction) -> None:
    """``eightbit bench kernels|ray|classify|translate`` and their options."""
    from eightbit.bench.classify import BATCHES, DEFAULT_METHOD, MODELS, SEQ_LEN
    from eightbit.cli.ray import _bench_ray
    from eightbit.evaluate.nmt import ALL_METHODS

    bench = commands.add_parser("bench", help="benchmarks (FP32 and INT8 in the same run)")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    p = bench_commands.add_parser("kernels", help="FP32 vs INT8 linear layers vs ONNX Runtime")
    add_report_options(p)
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

    p = bench_commands.add_parser(
        "ray", help="sentences/s: single process vs 1, 2, ... local Ray workers (INT8)"
    )
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"INT8 directory, or FP32 checkpoint to quantize dynamically "
        f"(default {DEFAULT_MODEL})",
    )
    p.add_argument("--test-size", type=int, default=None, help="first N test sentences (all 1,000)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time")
    p.add_argument("--threads", type=int, default=2, help="cores shared by the workers (default 2)")
    p.add_argument("--shard-sentences", type=int, default=64, help="sentences per shard")
    add_report_options(p)
    p.set_defaults(handler=_bench_ray)

    p = bench_commands.add_parser(
        "classify", help="BERT classifiers: torch FP32, eightbit INT8, ONNX Runtime FP32/INT8"
    )
    add_report_options(p)
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    p.add_argument(
        "--models", nargs="+", default=list(MODELS), choices=list(MODELS), help="models to time"
    )
    p.add_argument("--batch", type=int, nargs="+", default=list(BATCHES), help="batch sizes")
    p.add_argument("--seq-len", type=int, default=SEQ_LEN, help=f"tokens (default {SEQ_LEN})")
    p.add_argument(
        "--calibration-batches", type=int, default=2, help="random calibration batches (default 2)"
    )
    p.add_argument(
        "--method",
        default=DEFAULT_METHOD,
        choices=[m for m in ALL_METHODS if m != "dynamic"],
        metavar="METHOD",
        help=f"calibration method of the static rows (default {DEFAULT_METHOD})",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per engine (default 5)")
    _add_common_model_options(p, beam=False)
    p.set_defaults(handler=_bench_classify)

    p = bench_commands.add_parser(
        "translate", help="tokens/s: HF generate vs eightbit vs CTranslate2, FP32 and INT8"
    )
    add_report_options(p, "tables")
    p.add_argument("--threads", type=int, default=2, help="threads in total (default 2)")
    p.add_argument("--beams", type=int, nargs="+", default=[1, 4], help="beam sizes (default 1 4)")
    p.add_argument(
        "--models",
        nargs="+",
        default=["shipped", "base"],
        choices=("shipped", "base"),
        help="shipped: --model over the test set; base: random transformer-base, forced length",
    )
    p.add_argument(
        "--engines",
        nargs="+",
        default=["hf", "eightbit", "ctranslate2"],
        choices=("hf", "eightbit", "ctranslate2"),
        help="engines to time, each in FP32 and INT8 (default all)",
    )
    p.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"Marian checkpoint (default {DEFAULT_MODEL})"
    )
    p.add_argument(
        "--test-size", type=int, default=None, help="first N test sentences (default: all 1,000)"
    )
    p.add_argument(
        "--hf-test-size",
        type=int,
        default=500,
        help="shipped: time HF generate (the slowest) on the first N test sentences "
        "(default 500; 0: all)",
    )
    p.add_argument(
        "--base-sentences", type=int, default=32, help="base model: sentences (default 32)"
    )
    p.add_argument(
        "--base-source-tokens",
        type=int,
        default=20,
        help="base model: tokens per source sentence (default 20; output 2x + 10)",
    )
    p.add_argument(
        "--calibration-size", type=int, default=600, help="shipped INT8: calibration sentences"
    )
    p.add_argument(
        "--repeats",
        type=positive_int,
        default=3,
        help="timed runs per engine, taken in turns; rows report the median (default 3)",
    )
    p.add_argument(
        "--worker-kind",
        default="process",
        choices=WORKER_KINDS,
        help="eightbit and HF workers: forked processes (default), threads, or auto",
    )
    _add_common_model_options(p, beam=False)
    p.set_defaults(handler=_bench_translate)
