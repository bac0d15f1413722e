"""The ``eightbit`` command line: parse, make one API call, print. No logic of its own.

User mistakes (:class:`eightbit.errors.EightbitError`, missing files) print one line on stderr
and exit with status 2, without a traceback.
"""

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from eightbit.cli.bench import add_bench_parsers
from eightbit.cli.classify import (
    _add_finetune_options,
    _add_qat_options,
    _demo_classify,
    _finetune,
)
from eightbit.cli.common import (
    DEFAULT_MODEL,
    METHOD_HELP,
    Parser,
    _add_common_model_options,
    add_config_options,
    add_quiet_everywhere,
)
from eightbit.cli.decoding import add_decoding_options
from eightbit.cli.nmt import _demo_translate, _evaluate, _quantize, _translate
from eightbit.cli.ray import _add_ray_options
from eightbit.cli.sensitivity import _analyze, add_sensitivity_options
from eightbit.errors import EightbitError

Handler = Callable[[argparse.Namespace], int]


def _demo(args: argparse.Namespace) -> int:
    if args.task == "classify":
        if args.methods is None:
            from eightbit.evaluate.classify import ALL_METHODS as CLASSIFY_METHODS

            args.methods = list(CLASSIFY_METHODS)
        return _demo_classify(args)
    return _demo_translate(args)


def _add_calibration_options(p: argparse.ArgumentParser, methods: Sequence[str]) -> None:
    p.add_argument(
        "--method",
        default="kl-independent",
        choices=methods,
        metavar="METHOD",
        help=METHOD_HELP + ", auto: per layer, the least output error (default kl-independent)",
    )
    p.add_argument(
        "--calibration-file",
        help="calibration sentences or texts, one per line (default: a seeded sample of the "
        "shipped training set, a classifier's: of --task's)",
    )
    p.add_argument("--calibration-size", type=int, default=600, help="calibration sentences")
    p.add_argument("--seed", type=int, default=0, help="calibration and dev sample seed")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="eightbit",
        description="Quantize FP32 Transformer models to INT8; evaluate and benchmark them.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from eightbit.config import AUTO
    from eightbit.data.classification import TASKS
    from eightbit.evaluate.nmt import ALL_METHODS
    from eightbit.mixed.method_choice import CANDIDATE_METHODS

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
    p.add_argument(
        "--plant-outliers",
        "--outlier-scale",
        dest="plant_outliers",
        type=float,
        default=None,
        metavar="SCALE",
        help="translate only: first make one feed-forward unit per layer SCALE times larger "
        "without changing the FP32 function (shows the min/max failure; try 300)",
    )
    _add_common_model_options(p)
    add_decoding_options(p)
    _add_finetune_options(p)
    _add_qat_options(p)
    p.set_defaults(handler=_demo)

    p = commands.add_parser(
        "finetune", help="fine-tune an FP32 classifier on a shipped corpus (cached)"
    )
    p.add_argument("task", choices=list(TASKS), help="classification task")
    _add_finetune_options(p)
    p.set_defaults(handler=_finetune)

    p = commands.add_parser(
        "quantize", help="FP32 Marian or BERT-family classifier checkpoint -> INT8 model directory"
    )
    p.add_argument(
        "model", help="FP32 checkpoint directory (Hugging Face Marian or fine-tuned classifier)"
    )
    p.add_argument("output", help="directory for the INT8 model")
    _add_calibration_options(p, (*ALL_METHODS, AUTO))
    add_sensitivity_options(p, analyze=False)
    _add_common_model_options(p, beam=False)
    from eightbit.config import QuantConfig

    add_config_options(p, QuantConfig, skip=("method", "backend"))
    p.set_defaults(handler=_quantize)

    p = commands.add_parser(
        "analyze",
        help="per-layer sensitivity: SQNR and dev BLEU or accuracy when one layer switches "
        "precision",
    )
    p.add_argument(
        "model",
        nargs="?",
        default=DEFAULT_MODEL,
        help=f"FP32 Marian checkpoint or fine-tuned classifier (default {DEFAULT_MODEL})",
    )
    _add_calibration_options(p, (*CANDIDATE_METHODS, AUTO))
    add_sensitivity_options(p, analyze=True)
    p.add_argument("--output-dir", default="reports/sensitivity", help="report directory")
    p.add_argument("--json", help="also write the JSON report to this file")
    _add_common_model_options(p, beam=False)
    add_config_options(p, QuantConfig, skip=("method", "backend"))
    p.set_defaults(handler=_analyze)

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
    add_decoding_options(p)
    _add_ray_options(p)
    p.set_defaults(handler=_translate)

    p = commands.add_parser("evaluate", help="BLEU/chrF of a model on source/reference files")
    p.add_argument("model", help="FP32 checkpoint or INT8 model directory")
    p.add_argument("source", help="source sentences, one per line")
    p.add_argument("reference", help="reference translations, one per line")
    p.add_argument("--json", help="write the scores as JSON to this file")
    _add_common_model_options(p)
    add_decoding_options(p)
    _add_ray_options(p)
    p.set_defaults(handler=_evaluate)

    add_bench_parsers(commands)
    add_quiet_everywhere(parser)
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
    if args.quiet or not sys.stderr.isatty():
        from eightbit.progress import hide_library_bars

        hide_library_bars()
    handler: Handler = args.handler
    try:
        return handler(args)
    except EightbitError as err:
        print(f"eightbit: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a path the user named that the system refused
        where = f"{err.filename}: " if err.filename else ""
        reason = " ".join(str(err.strerror or err).split())
        print(f"eightbit: error: {where}{reason}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eightbit: interrupted", file=sys.stderr)
        return 130
