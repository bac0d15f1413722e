"""Classification commands: ``finetune`` and ``demo --task classify`` (Q8BERT)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from eightbit.cli.common import DEFAULT_CLASSIFY_CACHE, config_from_args


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


def quantize_classifier(args: argparse.Namespace) -> int:
    """``eightbit quantize`` of a fine-tuned BERT-family classifier: calibration texts from
    ``--calibration-file`` or a seeded sample of the task's training split."""
    from eightbit.cli.nmt import _calibration_sources
    from eightbit.cli.sensitivity import classification_task_name
    from eightbit.config import DYNAMIC, QuantConfig
    from eightbit.data.classification import load_task
    from eightbit.evaluate.sensitivity_classify import calibration_sample, load_fine_tuned
    from eightbit.models.bert import calibration_batches, calibration_run, save_classifier
    from eightbit.transform import quantize

    texts, labels = None, None
    if args.task is not None or (args.method != DYNAMIC and not args.calibration_file):
        train = load_task(classification_task_name(args), "train")
        texts = calibration_sample(train.texts, args.calibration_size, args.seed)
        labels = train.label_names
    if args.calibration_file and args.method != DYNAMIC:
        texts = _calibration_sources(args)
    model, tokenizer = load_fine_tuned(Path(args.model), labels)
    calib = None if args.method == DYNAMIC else calibration_batches(tokenizer, texts)
    config = config_from_args(QuantConfig, args)
    int8 = quantize(model, calib, config, run=calibration_run, progress=not args.quiet)
    path = save_classifier(int8, tokenizer, args.output, extra={"source": args.model})
    print(f"saved INT8 model ({args.method}) to {path}")
    return 0


def _distill_config(args: argparse.Namespace):
    from eightbit.training.distill import DistillConfig

    if args.qat_distill_weight == 0:
        return None
    return DistillConfig(weight=args.qat_distill_weight, temperature=args.qat_temperature)


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
        qat_distill=_distill_config(args),
        qat_start=args.qat_start,
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


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1]")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def _add_qat_options(p: argparse.ArgumentParser) -> None:
    """The Q8BERT QAT recipe of ``demo --task classify`` (defaults: the evaluation's)."""
    from eightbit.evaluate.classify import (
        DEFAULT_QAT_DISTILL,
        DEFAULT_QAT_FINETUNE,
        FINETUNED,
        QAT_STARTS,
    )

    f, d = DEFAULT_QAT_FINETUNE, DEFAULT_QAT_DISTILL
    p.add_argument(
        "--qat-start",
        choices=QAT_STARTS,
        default=FINETUNED,
        help="QAT fine-tunes from the FP32 fine-tune, or from the pre-trained encoder with a new "
        f"head as Q8BERT does (default {FINETUNED})",
    )
    p.add_argument(
        "--qat-epochs", type=int, default=f.epochs, help=f"QAT epochs (default {f.epochs})"
    )
    p.add_argument(
        "--qat-learning-rate",
        type=float,
        default=f.learning_rate,
        help=f"QAT learning rate (default {f.learning_rate})",
    )
    p.add_argument(
        "--qat-distill-weight",
        type=_fraction,
        default=d.weight,
        help="weight of the FP32 teacher's soft targets in the QAT loss, the rest on the labels "
        f"(0: labels only; default {d.weight})",
    )
    p.add_argument(
        "--qat-temperature",
        type=_positive,
        default=d.temperature,
        help=f"softmax temperature of the distillation (default {d.temperature})",
    )
