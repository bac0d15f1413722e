"""Shared pieces of the command line: the parser, input files, output files, options."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

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


class Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error: ``eightbit quantize: error: ... (see --help)``."""

    def error(self, message: str) -> NoReturn:
        one_line = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {one_line} (see {self.prog} --help)\n")


def add_quiet_everywhere(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand, at any depth, ``-q/--quiet`` (also accepted before the command)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.add_argument(
                    "-q",
                    "--quiet",
                    action="store_true",
                    default=argparse.SUPPRESS,
                    help="no progress bars or info logs",
                )
                add_quiet_everywhere(sub)


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise UsageError(
            f"{where}: not UTF-8 text (line {line}, byte offset {err.start}); "
            "expected a UTF-8 text file"
        ) from None


def _read_lines(path: str) -> list[str]:
    """Every line of a UTF-8 text file (or stdin for ``-``), stripped; empty lines kept.

    Lines end at ``\\n`` only (not at the other separators ``str.splitlines`` knows, such as
    form feed or U+2028), so line N of the input is line N of any output built from it.
    """
    if path == "-":
        data, where = sys.stdin.buffer.read(), "stdin"
    else:
        file = Path(path)
        if file.is_dir():
            raise UsageError(f"{path}: is a directory; expected a text file")
        if not file.is_file():
            raise UsageError(f"{path}: no such file; expected a text file")
        try:
            data = file.read_bytes()
        except OSError as err:
            raise UsageError(f"{path}: cannot be read ({err.strerror})") from None
        where = path
    text = _decode(data, where)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line does not start another
    return [line.strip() for line in lines]


def _check_output_file(output: str | None, *inputs: str) -> None:
    """Refuse an output file that is a directory or one of the command's inputs."""
    if not output:
        return
    target = Path(output)
    if target.is_dir():
        raise UsageError(f"{output}: is a directory; expected a file path for the output")
    for source in inputs:
        if (
            source != "-"
            and target.exists()
            and Path(source).exists()
            and os.path.samefile(target, source)
        ):
            raise UsageError(f"{output}: is the input {source}; choose another output file")


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


def add_config_options(
    p: argparse.ArgumentParser, config_class: Any, skip: tuple[str, ...]
) -> None:
    """One ``--field-name`` option per field of a config dataclass (the API's names, verbatim)."""
    for field in dataclasses.fields(config_class):
        if field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        help_text = f"{config_class.__name__}.{field.name} (default {default!r})"
        if isinstance(default, bool):
            p.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=help_text
            )
        elif isinstance(default, tuple):
            p.add_argument(flag, nargs="+", default=default, metavar="PATTERN", help=help_text)
        else:
            p.add_argument(flag, type=type(default), default=default, help=help_text)


def config_from_args(config_class: Any, args: argparse.Namespace) -> Any:
    """The config dataclass built from the options :func:`add_config_options` added."""
    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(config_class)
        if hasattr(args, f.name)
    }
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return config_class(**values)


def positive_int(text: str) -> int:
    """argparse type: a positive integer (a one-line usage error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value
