"""Tiny Marian checkpoints (random weights, the shipped tokenizer) for fast CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import tiny_marian_architecture

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "marian-en-es"
CALIBRATION = ["the dog sees the house", "a woman reads a book", "where is the station?"]


def build_checkpoint(directory: Path, vocab_size: int | None = None, nan: bool = False) -> Path:
    """An FP32 Marian checkpoint: tiny random weights, the shipped model's tokenizer."""
    from transformers import MarianTokenizer

    from eightbit.models.marian_build import build_model
    from eightbit.training.seq2seq import export

    tokenizer = MarianTokenizer.from_pretrained(str(SHIPPED), local_files_only=True)
    torch.manual_seed(0)
    arch = tiny_marian_architecture(d_model=16, ffn_dim=32, max_positions=24)
    model = build_model(vocab_size or len(tokenizer), arch).eval()
    if nan:
        with torch.no_grad():
            model.model.encoder.layers[0].fc1.weight[0, 0] = float("nan")
    export(model, tokenizer, directory)
    return directory


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("tiny") / "fp32")


@pytest.fixture(scope="session")
def calibration_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("calib") / "calibration.txt"
    path.write_text("\n".join(CALIBRATION) + "\n")
    return path


@pytest.fixture(scope="session")
def int8_model(checkpoint, calibration_file, tmp_path_factory) -> Path:
    from eightbit.cli import main

    out = tmp_path_factory.mktemp("tiny-int8") / "int8"
    argv = ["-q", "quantize", str(checkpoint), str(out), "--method", "minmax"]
    assert main([*argv, "--calibration-file", str(calibration_file)]) == 0
    return out
