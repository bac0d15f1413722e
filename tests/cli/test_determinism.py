"""Same inputs and seed -> byte-identical outputs (quantized model, translations, scores)."""

from __future__ import annotations

from eightbit.cli import main
from eightbit.io import METADATA_FILE, WEIGHTS_FILE


def test_quantize_twice_gives_identical_files(checkpoint, calibration_file, int8_model, tmp_path):
    again = tmp_path / "int8"
    argv = ["-q", "quantize", str(checkpoint), str(again), "--method", "minmax"]
    assert main([*argv, "--calibration-file", str(calibration_file)]) == 0
    for name in (WEIGHTS_FILE, METADATA_FILE):
        assert (again / name).read_bytes() == (int8_model / name).read_bytes(), name


def test_translate_and_evaluate_twice_give_identical_files(int8_model, calibration_file, tmp_path):
    outputs = []
    for run in (1, 2):
        out, scores = tmp_path / f"out{run}.txt", tmp_path / f"scores{run}.json"
        model, source = str(int8_model), str(calibration_file)
        assert main(["-q", "translate", model, source, "--output", str(out)]) == 0
        assert main(["-q", "evaluate", model, source, source, "--json", str(scores)]) == 0
        outputs.append((out.read_bytes(), scores.read_bytes()))
    assert outputs[0] == outputs[1]
    assert outputs[0][0].count(b"\n") == 3  # one line out per line in
