"""Translation commands: ``quantize``, ``translate``, ``evaluate`` and the translation demo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eightbit.atomic import write_text_atomic
from eightbit.cli.common import (
    UsageError,
    _check_output_file,
    _read_lines,
    _write_outputs,
    config_from_args,
)
from eightbit.cli.decoding import decoding_options
from eightbit.cli.ray import _translate_file_on_ray, _translate_on_ray


def _quantize(args: argparse.Namespace) -> int:
    from eightbit.cli.sensitivity import max_drop, model_family
    from eightbit.config import DYNAMIC
    from eightbit.io import check_save_target
    from eightbit.models.family import CLASSIFICATION

    if Path(args.output).resolve() == Path(args.model).resolve():
        raise UsageError(f"{args.output}: is the input model; choose another output directory")
    check_save_target(args.output)  # before the slow part, not after it
    family = model_family(args)
    if max_drop(args) is not None:
        if args.method == DYNAMIC:
            flag = "--max-bleu-drop" if args.max_bleu_drop is not None else "--max-accuracy-drop"
            raise UsageError(f"{flag} needs a calibration method, not dynamic")
        from eightbit.cli.sensitivity import quantize_with_fallback_command

        return quantize_with_fallback_command(args, family)
    if family == CLASSIFICATION:
        from eightbit.cli.classify import quantize_classifier

        return quantize_classifier(args)
    return _quantize_translation(args)


def _quantize_translation(args: argparse.Namespace) -> int:
    from eightbit.config import DYNAMIC, QuantConfig
    from eightbit.models.marian import (
        calibration_batches,
        calibration_run,
        load_marian,
        save_translation_model,
    )
    from eightbit.transform import quantize

    model, tokenizer = load_marian(args.model)
    config = config_from_args(QuantConfig, args)
    calib = None
    if args.method != DYNAMIC:
        calib = calibration_batches(
            model, tokenizer, _calibration_sources(args), progress=not args.quiet
        )
    int8 = quantize(model, calib, config, run=calibration_run, progress=not args.quiet)
    path = save_translation_model(int8, tokenizer, args.output, extra={"source": args.model})
    print(f"saved INT8 model ({args.method}) to {path}")
    return 0


def _calibration_sources(args: argparse.Namespace) -> list[str]:
    """``--calibration-file`` lines, or a seeded sample of the shipped training set."""
    if args.calibration_file:
        sources = [s for s in _read_lines(args.calibration_file) if s]
    else:
        from eightbit.data.corpus import load_parallel_corpus
        from eightbit.evaluate.nmt import sample_calibration_sources

        train = load_parallel_corpus("train")
        sources = sample_calibration_sources(train, args.calibration_size, args.seed)
    if not sources:
        raise UsageError("the calibration set is empty; expected at least one sentence")
    return sources


def _translate(args: argparse.Namespace) -> int:
    from eightbit.models.marian import load_translation_model, translate_lines, translation_text

    _check_output_file(args.output, args.input)
    if args.ray is not None:
        return _translate_file_on_ray(args, _read_lines(args.input))
    model, tokenizer = load_translation_model(args.model)
    lines = _read_lines(args.input)
    outputs = translate_lines(
        model, tokenizer, lines, beam=args.beam, progress=not args.quiet, **decoding_options(args)
    )
    text = translation_text(outputs)
    if args.output:
        write_text_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from eightbit.evaluate.metrics import translation_scores
    from eightbit.models.marian import load_translation_model, translate_lines

    _check_output_file(args.json, args.source, args.reference)
    sources, references = _read_lines(args.source), _read_lines(args.reference)
    if len(sources) != len(references):
        raise UsageError(
            f"{args.source} has {len(sources)} lines but {args.reference} has "
            f"{len(references)}; expected one reference per source line"
        )
    if not sources:
        raise UsageError(f"{args.source}: empty; expected sentences to translate")
    if args.ray is not None:
        outputs = _translate_on_ray(args, sources)
    else:
        model, tokenizer = load_translation_model(args.model)
        outputs = translate_lines(
            model, tokenizer, sources, beam=args.beam, progress=not args.quiet,
            **decoding_options(args),
        )  # fmt: skip
    scores = translation_scores(
        [o.text for o in outputs], references, [o.hit_length_limit for o in outputs]
    )
    report = {"model": args.model, "sentences": len(sources), "beam": args.beam, **scores.__dict__}
    markdown = "".join(f"{k}: {v}\n" for k, v in report.items())
    _write_outputs(args, report, markdown)
    print(markdown, end="")
    return 0


def _demo_translate(args: argparse.Namespace) -> int:
    from eightbit.evaluate.nmt import ALL_METHODS

    if args.methods and "qat" in args.methods:
        raise UsageError("method qat needs --task classify (translation has no QAT run yet)")
    args.methods = args.methods or list(ALL_METHODS)
    if args.plant_outliers is not None and args.plant_outliers <= 0:
        raise UsageError(f"--plant-outliers: expected a positive scale, got {args.plant_outliers}")
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
        outlier_scale=args.plant_outliers,
        progress=not args.quiet,
        **decoding_options(args),
    )
    report = run_nmt_eval(config, load_parallel_corpus("train"), load_parallel_corpus("test"))
    paths = write_reports(report, Path(args.output_dir))
    if args.json:
        from eightbit.evaluate.report import write_json

        write_json(args.json, json.loads(paths[0].read_text()))
    print(to_markdown(report), end="")
    print(f"\nreports written to {args.output_dir}/ (nmt.md, nmt.json, nmt_bleu.png)")
    return 0
