"""Bad input: one line on stderr naming the problem, exit status 2, no traceback, nothing written.

In-process (``main([...])`` with capsys) on a tiny random Marian model with the shipped tokenizer.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from eightbit.cli import main
from eightbit.io import METADATA_FILE, WEIGHTS_FILE
from tests.cli.conftest import build_checkpoint


def fails(argv: list[str], capsys, *fragments: str) -> str:
    """Run the CLI; it must exit 2 with exactly one stderr line containing every fragment."""
    assert main(["--quiet", *argv]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("eightbit: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("the dog sees the house\n")
    return path


# --- paths -------------------------------------------------------------------------------------


def test_missing_model_directory(capsys, text_file, tmp_path):
    fails(["translate", str(tmp_path / "nope"), str(text_file)], capsys, "nope", "not a directory")


def test_a_file_where_a_model_directory_is_expected(capsys, text_file):
    fails(["translate", str(text_file), str(text_file)], capsys, "in.txt", "not a directory")


def test_missing_input_file(capsys, checkpoint, tmp_path):
    fails(["translate", str(checkpoint), str(tmp_path / "none.txt")], capsys, "none.txt", "no such")


def test_a_directory_where_an_input_file_is_expected(capsys, checkpoint, tmp_path):
    fails(["translate", str(checkpoint), str(tmp_path)], capsys, "is a directory", "text file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_input_file(capsys, checkpoint, text_file):
    text_file.chmod(0)
    fails(["translate", str(checkpoint), str(text_file)], capsys, "in.txt", "cannot be read")


def test_output_that_is_a_directory(capsys, checkpoint, text_file, tmp_path):
    argv = ["translate", str(checkpoint), str(text_file), "--output", str(tmp_path)]
    fails(argv, capsys, "is a directory", "output")


def test_output_that_is_the_input(capsys, checkpoint, text_file):
    argv = ["translate", str(checkpoint), str(text_file), "--output", str(text_file)]
    fails(argv, capsys, "is the input")
    assert text_file.read_text() == "the dog sees the house\n"


def test_evaluate_json_that_is_the_reference(capsys, checkpoint, text_file):
    argv = ["evaluate", str(checkpoint), str(text_file), str(text_file), "--json", str(text_file)]
    fails(argv, capsys, "is the input")


# --- text input --------------------------------------------------------------------------------


def test_non_utf8_input_names_line_and_byte(capsys, checkpoint, tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("fine\nna\xefve caf\xe9\n".encode("latin-1"))
    fails(["translate", str(checkpoint), str(bad)], capsys, "latin1.txt", "line 2", "byte offset 7")


def test_non_utf8_stdin(capsys, checkpoint, monkeypatch):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfe")))
    fails(["translate", str(checkpoint)], capsys, "stdin", "not UTF-8")


def test_empty_lines_stay_empty_and_aligned(checkpoint, tmp_path):
    source = tmp_path / "in.txt"
    # a form feed or U+2028 inside a line must not split it: line N in, line N out
    source.write_text("the dog\n\n   \nthe\x0chouse\u2028here\n\nend\n")
    out = tmp_path / "out.txt"
    assert main(["-q", "translate", str(checkpoint), str(source), "--output", str(out)]) == 0
    lines = out.read_text().split("\n")
    assert len(lines) == 7 and lines[-1] == ""
    assert [bool(line) for line in lines[:6]] == [True, False, False, True, False, True]


def test_long_line_is_truncated_with_a_warning_naming_it(checkpoint, tmp_path, caplog):
    source = tmp_path / "in.txt"
    source.write_text("short one\n" + "the dog sees the house " * 20 + "\nshort two\n")
    out = tmp_path / "out.txt"
    with caplog.at_level(logging.WARNING):
        assert main(["-q", "translate", str(checkpoint), str(source), "--output", str(out)]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("line 2: ") and "truncated" in warnings[0]
    assert len(out.read_text().splitlines()) == 3


# --- quantize ----------------------------------------------------------------------------------


def test_empty_calibration_file(capsys, checkpoint, tmp_path):
    for text in ("", "\n  \n\n"):
        calib = tmp_path / "calib.txt"
        calib.write_text(text)
        argv = [
            "quantize",
            str(checkpoint),
            str(tmp_path / "out"),
            "--calibration-file",
            str(calib),
        ]
        fails(argv, capsys, "calibration set is empty")
        assert not (tmp_path / "out").exists()


def test_calibration_that_produces_nan(capsys, tmp_path, calibration_file):
    broken = build_checkpoint(tmp_path / "nan-model", nan=True)
    out = tmp_path / "out"
    argv = ["quantize", str(broken), str(out), "--method", "minmax"]
    fails([*argv, "--calibration-file", str(calibration_file)], capsys, "NaN")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan-model"]


def test_output_that_is_a_foreign_directory_is_left_alone(capsys, checkpoint, tmp_path):
    foreign = tmp_path / "data"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    fails(["quantize", str(checkpoint), str(foreign), "--method", "dynamic"], capsys, "refusing")
    assert listing(tmp_path) == ["data", "data/precious.txt"]


def test_output_that_is_the_input_model(capsys, checkpoint):
    before = listing(checkpoint)
    fails(["quantize", str(checkpoint), str(checkpoint), "--method", "dynamic"], capsys, "input")
    assert listing(checkpoint) == before


def test_tokenizer_larger_than_the_model_vocabulary(capsys, tmp_path, text_file):
    small = build_checkpoint(tmp_path / "small-vocab", vocab_size=100)
    fails(["translate", str(small), str(text_file)], capsys, "tokenizer has 8000 tokens", "100")


def test_int8_model_whose_tokenizer_does_not_fit(capsys, tmp_path, text_file):
    from transformers import MarianMTModel, MarianTokenizer

    import eightbit
    from eightbit.models.marian import save_translation_model

    small = build_checkpoint(tmp_path / "small-vocab", vocab_size=100)
    model = MarianMTModel.from_pretrained(str(small))
    tokenizer = MarianTokenizer.from_pretrained(str(small))
    int8 = eightbit.quantize(model, None, eightbit.QuantConfig(method="dynamic"))
    save_translation_model(int8, tokenizer, tmp_path / "int8")
    fails(["translate", str(tmp_path / "int8"), str(text_file)], capsys, "tokenizer has 8000")


# --- saved INT8 models -------------------------------------------------------------------------


@pytest.fixture
def damaged(int8_model, tmp_path) -> Path:
    copy = tmp_path / "int8"
    shutil.copytree(int8_model, copy)
    return copy


def _edit_metadata(directory: Path, edit) -> None:
    meta = json.loads((directory / METADATA_FILE).read_text())
    edit(meta)
    (directory / METADATA_FILE).write_text(json.dumps(meta))


def test_truncated_weights(capsys, damaged, text_file):
    weights = damaged / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:1000])
    fails(["translate", str(damaged), str(text_file)], capsys, WEIGHTS_FILE, "safetensors")


def test_corrupt_weights(capsys, damaged, text_file):
    (damaged / WEIGHTS_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    fails(["translate", str(damaged), str(text_file)], capsys, "not a readable safetensors")


def test_foreign_safetensors_file(capsys, damaged, checkpoint, text_file):
    shutil.copy(checkpoint / "model.safetensors", damaged / WEIGHTS_FILE)
    fails(["translate", str(damaged), str(text_file)], capsys, "not an eightbit-int8 weights file")


def test_unknown_format_version(capsys, damaged, text_file):
    _edit_metadata(damaged, lambda m: m.update(format_version=2))
    fails(["translate", str(damaged), str(text_file)], capsys, "format_version 2", "expected 1")


def test_metadata_missing_a_key(capsys, damaged, text_file):
    _edit_metadata(damaged, lambda m: m.pop("tensors"))
    fails(["translate", str(damaged), str(text_file)], capsys, "'tensors' missing")


def test_config_that_does_not_match_the_weights(capsys, damaged, text_file):
    _edit_metadata(damaged, lambda m: m["architecture"]["config"].update(d_model=24))
    fails(["translate", str(damaged), str(text_file)], capsys, "the architecture expects")


def test_corrupt_tokenizer_file(capsys, damaged, text_file):
    (damaged / "source.spm").write_bytes(b"garbage")
    fails(["translate", str(damaged), str(text_file)], capsys, "cannot load the tokenizer")


def test_damaged_model_without_quiet_is_still_one_line_in_a_subprocess(damaged, text_file):
    """The real process, not quiet, stderr a pipe: no library bar or log joins the error line."""
    import subprocess
    import sys

    weights = damaged / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-10])
    result = subprocess.run(
        [sys.executable, "-m", "eightbit.cli", "translate", str(damaged), str(text_file)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.safetensors" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
