"""``analyze`` and ``quantize --max-bleu-drop``: help, and bad values rejected before any work."""

import pytest

from eightbit.cli import main


def test_analyze_has_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--dev-size" in out and "--max-bleu-drop" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["analyze", "no/model", "--dev-size", "0"], "--dev-size: expected a positive"),
        (["quantize", "m", "out", "--max-bleu-drop", "-1"], "--max-bleu-drop: expected a non"),
        (["quantize", "m", "out", "--max-bleu-drop", "1", "--method", "dynamic"], "not dynamic"),
        (["analyze", "no/such/model"], "not a directory"),
    ],
)
def test_bad_values_exit_2_with_one_line(args, message, capsys):
    assert main(["--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_analyze_rejects_methods_it_cannot_read_off_a_histogram():
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "--method", "ema"])
    assert exit_info.value.code == 2
