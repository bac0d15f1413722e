"""The command line: --help everywhere, one-line errors with exit status 2."""

import subprocess
import sys

import pytest

from eightbit.cli import build_parser, main

SUBCOMMANDS = [
    ["demo"],
    ["finetune"],
    ["quantize"],
    ["translate"],
    ["evaluate"],
    ["bench"],
    ["bench", "kernels"],
]


@pytest.mark.parametrize("words", SUBCOMMANDS)
def test_every_subcommand_has_help(words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*words, "--help"])
    assert exit_info.value.code == 0
    assert "usage: eightbit" in capsys.readouterr().out


def test_unknown_option_exits_2():
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["quantize", "--no-such-option"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["translate", "no/such/model"], "not a directory"),
        (["quantize", "no/such/model", "out"], "not a directory"),
    ],
)
def test_user_mistakes_are_one_line_exit_2(args, message, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "eightbit.cli", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        input="",
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_model_directory_without_tokenizer_is_rejected(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert main(["--quiet", "translate", str(tmp_path)]) == 2


def test_worker_kind_option(capsys):
    from eightbit.cli.decoding import decoding_options

    args = build_parser().parse_args(["translate", "model", "--worker-kind", "thread"])
    assert decoding_options(args)["worker_kind"] == "thread"
    assert decoding_options(build_parser().parse_args(["translate", "model"]))["worker_kind"] == (
        "auto"
    )
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["translate", "model", "--worker-kind", "fiber"])
    assert exit_info.value.code == 2
    assert "--worker-kind" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--workers", "--batch-tokens", "--max-sentences"])
def test_decoding_options_must_be_positive(option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["translate", "model", option, "0"])
    assert exit_info.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err
