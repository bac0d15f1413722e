"""Sensitivity commands: ``analyze``, and ``quantize --max-bleu-drop`` (automatic FP32 fallback)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from eightbit.cli.common import UsageError, finish_report

if TYPE_CHECKING:
    from eightbit.evaluate.sensitivity import SensitivityConfig


def add_sensitivity_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``analyze`` and ``quantize``'s fallback: the dev sample."""
    p.add_argument(
        "--dev-size",
        type=int,
        default=100,
        help="dev sentences scored (seeded sample of the 500 dev pairs; default 100)",
    )


def _config(args: argparse.Namespace, max_bleu_drop: float | None) -> SensitivityConfig:
    from eightbit.evaluate.sensitivity import SensitivityConfig

    if args.dev_size <= 0:
        raise UsageError(
            f"--dev-size: expected a positive number of sentences, got {args.dev_size}"
        )
    if max_bleu_drop is not None and max_bleu_drop < 0:
        raise UsageError(f"--max-bleu-drop: expected a non-negative number, got {max_bleu_drop}")
    return SensitivityConfig(
        model_dir=Path(args.model),
        method=args.method,
        dev_size=args.dev_size,
        seed=args.seed,
        backend=args.backend,
        max_bleu_drop=max_bleu_drop,
        progress=not args.quiet,
    )


def _analyze(args: argparse.Namespace) -> int:
    from eightbit.cli.nmt import _calibration_sources
    from eightbit.data.corpus import load_parallel_corpus
    from eightbit.evaluate.sensitivity import run_sensitivity
    from eightbit.evaluate.sensitivity_report import to_markdown, write_sensitivity_reports

    config = _config(args, args.max_bleu_drop)
    report = run_sensitivity(config, _calibration_sources(args), load_parallel_corpus("dev"))
    files = "sensitivity.md, sensitivity.json, sensitivity.png, histograms.png"
    return finish_report(args, report, write_sensitivity_reports, to_markdown(report), files)


def quantize_with_fallback_command(args: argparse.Namespace) -> int:
    """``eightbit quantize ... --max-bleu-drop X``: INT8 with the fewest FP32 layers needed."""
    from eightbit.cli.nmt import _calibration_sources
    from eightbit.data.corpus import load_parallel_corpus
    from eightbit.evaluate.sensitivity import quantize_with_fallback
    from eightbit.models.marian import save_translation_model

    config = _config(args, args.max_bleu_drop)
    sources = _calibration_sources(args)
    int8, tokenizer, record = quantize_with_fallback(config, sources, load_parallel_corpus("dev"))
    path = save_translation_model(int8, tokenizer, args.output, extra={"source": args.model})
    layers = ", ".join(record["fp32_layers"]) or "none"
    print(
        f"saved INT8 model ({args.method}) to {path}; FP32 layers: {layers}; dev BLEU "
        f"FP32 {record['fp32']:.2f}, INT8 {record['int8']:.2f}, mixed {record['final']:.2f} "
        f"(drop {record['drop']:.2f}, budget {record['max_drop']:g})"
    )
    return 0
