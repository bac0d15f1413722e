"""Shared pieces of the command line: user errors, input files, output files, options."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from eightbit.atomic import write_text_atomic
from eightbit.errors import EightbitError

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


def finish_report(
    args: argparse.Namespace,
    report: dict,
    write_reports: Callable[[dict, Path], object],
    markdown: str,
    files: str,
) -> int:
    """Write the report directory (``--output-dir``) and ``--json``, print the Markdown."""
    from eightbit.evaluate.report import write_json

    write_reports(report, Path(args.output_dir))
    if args.json:
        write_json(args.json, report)
    print(markdown, end="")
    print(f"\nreports written to {args.output_dir}/ ({files})")
    return 0


def _add_common_model_options(p: argparse.ArgumentParser, *, beam: bool = True) -> None:
    p.add_argument(
        "--backend",
        default="auto",
        help="INT8 kernel backend: auto, avx2, fbgemm, reference (default auto)",
    )
    if beam:
        p.add_argument("--beam", type=int, default=1, help="beam size (default 1: greedy)")
