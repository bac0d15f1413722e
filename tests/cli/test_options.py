"""Option names: the API's names on the command line, ``--quiet`` everywhere, progress bars."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

import eightbit.progress
from eightbit.cli import build_parser, main
from eightbit.cli.common import config_from_args
from eightbit.config import QuantConfig

# every subcommand with the positional arguments it needs
COMMANDS = [
    ["demo"],
    ["finetune", "sentiment"],
    ["quantize", "model", "out"],
    ["translate", "model"],
    ["evaluate", "model", "src", "ref"],
    ["bench", "kernels"],
]


@pytest.mark.parametrize("words", COMMANDS)
def test_quiet_is_accepted_before_and_after_every_subcommand(words):
    parser = build_parser()
    assert parser.parse_args(words).quiet is False
    assert parser.parse_args(["--quiet", *words]).quiet is True
    assert parser.parse_args([*words, "--quiet"]).quiet is True
    assert parser.parse_args([*words, "-q"]).quiet is True


def test_quantize_has_one_option_per_config_field_with_the_api_name():
    parser = build_parser()
    args = parser.parse_args(["quantize", "model", "out"])
    for field in dataclasses.fields(QuantConfig):
        assert hasattr(args, field.name), f"quantize has no --{field.name.replace('_', '-')}"
    assert config_from_args(QuantConfig, args) == QuantConfig()
    flags = ["--method", "minmax", "--no-per-channel", "--exclude", "lm_head", "--per-token"]
    args = parser.parse_args(
        ["quantize", "m", "o", *flags, "--percentile", "99.9", "--bins", "512"]
    )
    assert config_from_args(QuantConfig, args) == QuantConfig(
        method="minmax",
        per_channel=False,
        exclude=("lm_head",),
        per_token=True,
        percentile=99.9,
        bins=512,
    )


def test_outlier_scale_is_an_alias_of_plant_outliers():
    parser = build_parser()
    old = parser.parse_args(["demo", "--plant-outliers", "300"])
    new = parser.parse_args(["demo", "--outlier-scale", "300"])
    assert old.plant_outliers == new.plant_outliers == 300.0


def test_qat_recipe_options_default_to_the_evaluation_recipe():
    from eightbit.cli.classify import _distill_config
    from eightbit.evaluate import classify
    from eightbit.evaluate.classify import DEFAULT_QAT_DISTILL, DEFAULT_QAT_FINETUNE

    args = build_parser().parse_args(["demo", "--task", "classify"])
    assert _distill_config(args) == DEFAULT_QAT_DISTILL
    assert (args.qat_epochs, args.qat_learning_rate) == (
        DEFAULT_QAT_FINETUNE.epochs,
        DEFAULT_QAT_FINETUNE.learning_rate,
    )
    labels_only = build_parser().parse_args(["demo", "--qat-distill-weight", "0"])
    assert _distill_config(labels_only) is None
    assert args.qat_start == classify.DEFAULT_EVAL_CONFIG.qat_start == "finetuned"
    q8bert = build_parser().parse_args(["demo", "--task", "classify", "--qat-start", "pretrained"])
    assert q8bert.qat_start == "pretrained"


@pytest.mark.parametrize(
    "argv",
    [
        ["quantize", "m", "o", "--no-such-option"],
        ["no-such-command"],
        ["translate"],
        ["demo", "--task", "classify", "--qat-distill-weight", "1.5"],
        ["demo", "--task", "classify", "--qat-temperature", "0"],
        ["demo", "--task", "classify", "--qat-start", "scratch"],
    ],
)
def test_usage_errors_are_one_line_exit_2_no_traceback(argv):
    result = subprocess.run(
        [sys.executable, "-m", "eightbit.cli", *argv], capture_output=True, text=True
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "--help" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


class RecordingBars:
    """Stands in for tqdm: records each bar's description and whether it was switched off."""

    def __init__(self) -> None:
        self.bars: list[tuple[str, bool | None]] = []

    def __call__(self, iterable, desc, unit, total, leave, disable):
        self.bars.append((desc, disable))
        return iterable


@pytest.mark.parametrize("quiet", [False, True])
def test_long_work_shows_a_progress_bar_unless_quiet(
    quiet, monkeypatch, checkpoint, calibration_file, tmp_path
):
    bars = RecordingBars()
    monkeypatch.setattr(eightbit.progress, "tqdm", bars)
    flags = ["--quiet"] if quiet else []
    out = tmp_path / "int8"
    argv = ["quantize", str(checkpoint), str(out), "--method", "minmax"]
    assert main([*argv, "--calibration-file", str(calibration_file), *flags]) == 0
    translated = tmp_path / "translated.txt"
    argv = ["translate", str(out), str(calibration_file), "--output", str(translated)]
    assert main([*argv, *flags]) == 0
    names = [desc for desc, _ in bars.bars]
    assert "decoding calibration set" in names and "translating" in names, names
    # enabled bars pass disable=None (tqdm then shows them only on a terminal)
    assert all(disable is (True if quiet else None) for _, disable in bars.bars)
