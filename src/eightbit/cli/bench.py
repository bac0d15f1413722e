"""``eightbit bench ...``: benchmarks, FP32 and INT8 in the same run."""

from __future__ import annotations

import argparse

from eightbit.cli.common import _check_output_file, _write_outputs


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
        backend=args.backend,
        progress=not args.quiet,
    )
    report = run_translate_benchmark(config)
    return _publish(args, report, to_markdown(report))
