"""Sensitivity commands: ``analyze``, and ``quantize --max-bleu-drop/--max-accuracy-drop``
(automatic FP32 fallback), for translation models and sequence classifiers alike.

The checkpoint picks the task: ``model_type`` marian in its ``config.json`` is a translation
model (dev BLEU); a BERT-family classifier is scored by dev accuracy on the data of ``--task``
(default: the shipped task whose label names the checkpoint carries).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from eightbit.cli.common import UsageError, config_from_args, finish_report

if TYPE_CHECKING:
    from eightbit.evaluate.sensitivity import SensitivityConfig, SensitivityTask

DEFAULT_DEV_SIZE = 100


def add_sensitivity_options(p: argparse.ArgumentParser, analyze: bool) -> None:
    """Options shared by ``analyze`` and ``quantize``: the budgets, the dev sample, the task."""
    from eightbit.data.classification import TASKS

    def budget(metric: str, unit: str) -> str:
        if analyze:
            return f"also run the FP32 fallback with this {metric} budget ({unit}) and report it"
        return (
            f"keep the fewest most sensitive layers in FP32 until {metric} is within this many "
            f"{unit} of FP32 (recorded in eightbit.json)"
        )

    p.add_argument(
        "--max-bleu-drop",
        type=float,
        default=None,
        metavar="BLEU",
        help="translation: " + budget("dev BLEU", "BLEU points"),
    )
    p.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=None,
        metavar="POINTS",
        help="classifiers: " + budget("dev accuracy", "percentage points"),
    )
    p.add_argument(
        "--dev-size",
        type=int,
        default=DEFAULT_DEV_SIZE,
        help="dev examples scored: a seeded sample of the dev split, or of a held-out 10%% of "
        f"train when the task has no dev split (default {DEFAULT_DEV_SIZE})",
    )
    p.add_argument(
        "--task",
        choices=list(TASKS),
        default=None,
        help="classifiers: the shipped data set (calibration and dev data; default: the one "
        "whose label names the checkpoint carries)",
    )


def model_family(args: argparse.Namespace) -> str:
    """``translation`` or ``classification`` for ``args.model``; refuses options of the
    other family (``--max-accuracy-drop`` on a Marian model, ``--max-bleu-drop`` on BERT)."""
    from eightbit.models.family import CLASSIFICATION, TRANSLATION
    from eightbit.models.family import model_family as family_of

    family = family_of(Path(args.model))
    classifier_options = args.task is not None or args.max_accuracy_drop is not None
    if family is None:  # no config.json: let the loader of the intended family say what is wrong
        family = CLASSIFICATION if classifier_options else TRANSLATION
    if family == TRANSLATION:
        if args.max_accuracy_drop is not None:
            raise UsageError(
                f"--max-accuracy-drop: {args.model} is a Marian translation model; "
                "expected --max-bleu-drop"
            )
        if args.task is not None:
            raise UsageError(
                f"--task: {args.model} is a Marian translation model; --task picks the data "
                "of a classifier"
            )
    elif args.max_bleu_drop is not None:
        raise UsageError(
            f"--max-bleu-drop: {args.model} is a sequence classifier; expected --max-accuracy-drop"
        )
    return family


def max_drop(args: argparse.Namespace) -> float | None:
    """The fallback budget of either family (at most one is given), checked."""
    for flag, value in (
        ("--max-bleu-drop", args.max_bleu_drop),
        ("--max-accuracy-drop", args.max_accuracy_drop),
    ):
        if value is not None:
            if not value >= 0:  # also refuses nan
                raise UsageError(f"{flag}: expected a non-negative number, got {value}")
            return value
    return None


def _config(args: argparse.Namespace) -> SensitivityConfig:
    from eightbit.config import AUTO, QuantConfig
    from eightbit.evaluate.sensitivity import SensitivityConfig
    from eightbit.mixed.method_choice import CANDIDATE_METHODS

    if args.method not in (*CANDIDATE_METHODS, AUTO):
        raise UsageError(
            f"--method {args.method}: the sensitivity analysis reads every range off one "
            f"histogram; expected one of {', '.join((*CANDIDATE_METHODS, AUTO))}"
        )
    if args.dev_size <= 0:
        raise UsageError(f"--dev-size: expected a positive number of examples, got {args.dev_size}")
    if args.calibration_size <= 0 and not args.calibration_file:
        raise UsageError(
            f"--calibration-size: expected a positive number of texts, got {args.calibration_size}"
        )
    return SensitivityConfig(
        method=args.method,
        backend=args.backend,
        max_drop=max_drop(args),
        progress=not args.quiet,
        quantization=config_from_args(QuantConfig, args),
    )


def classification_task_name(args: argparse.Namespace) -> str:
    """``--task``, or the shipped task whose label names the checkpoint's config carries."""
    if args.task is not None:
        return args.task
    from eightbit.data.classification import TASKS, load_task
    from eightbit.models.family import label_names, read_config

    names = label_names(read_config(Path(args.model)) or {})
    for task in TASKS:
        if names is not None and load_task(task, "train").label_names == names:
            return task
    labels = ", ".join(names) if names else "unnamed"
    raise UsageError(
        f"{args.model}: cannot tell the task from its labels ({labels}); expected --task "
        + " or --task ".join(TASKS)
    )


def sensitivity_task(args: argparse.Namespace, family: str) -> SensitivityTask:
    """The model, calibration data and dev metric the options describe."""
    from eightbit.cli.nmt import _calibration_sources
    from eightbit.models.family import TRANSLATION

    if family == TRANSLATION:
        from eightbit.data.corpus import load_parallel_corpus
        from eightbit.evaluate.sensitivity_nmt import translation_task

        return translation_task(
            args.model,
            _calibration_sources(args),
            load_parallel_corpus("dev"),
            args.dev_size,
            args.seed,
            progress=not args.quiet,
        )
    from eightbit.data.classification import load_task
    from eightbit.evaluate.sensitivity_classify import classification_task

    name = classification_task_name(args)
    return classification_task(
        args.model,
        load_task(name, "train"),
        load_task(name, "dev"),
        calibration_texts=_calibration_sources(args) if args.calibration_file else None,
        calibration_size=args.calibration_size,
        dev_size=args.dev_size,
        seed=args.seed,
        task_name=name,
    )


def _analyze(args: argparse.Namespace) -> int:
    from eightbit.evaluate.sensitivity import run_sensitivity
    from eightbit.evaluate.sensitivity_report import to_markdown, write_sensitivity_reports

    family = model_family(args)
    config = _config(args)
    report = run_sensitivity(sensitivity_task(args, family), config, model_name=str(args.model))
    files = "sensitivity.md, sensitivity.json, sensitivity.png, histograms.png"
    return finish_report(args, report, write_sensitivity_reports, to_markdown(report), files)


def quantize_with_fallback_command(args: argparse.Namespace, family: str) -> int:
    """``eightbit quantize ... --max-bleu-drop X`` (or ``--max-accuracy-drop X``): INT8 with
    the fewest FP32 layers needed, saved with the record in ``extra.fp32_fallback``."""
    from eightbit.evaluate.sensitivity import quantize_with_fallback
    from eightbit.models.bert import save_classifier
    from eightbit.models.family import TRANSLATION
    from eightbit.models.marian import save_translation_model

    config = _config(args)
    task = sensitivity_task(args, family)
    int8, record = quantize_with_fallback(task, config)
    save = save_translation_model if family == TRANSLATION else save_classifier
    path = save(int8, task.tokenizer, args.output, extra={"source": args.model})
    layers = ", ".join(record["fp32_layers"]) or "none"
    print(
        f"saved INT8 model ({args.method}) to {path}; FP32 layers: {layers}; {record['metric']} "
        f"FP32 {record['fp32']:.2f}, INT8 {record['int8']:.2f}, mixed {record['final']:.2f} "
        f"(drop {record['drop']:.2f}, budget {record['max_drop']:g})"
    )
    return 0
