"""The training entry point's settings: a resumed run keeps the settings it was started with."""

import json

import pytest

from eightbit.errors import EightbitError
from eightbit.training.seq2seq import _parser, config_from_args


def _config(*argv):
    return config_from_args(_parser().parse_args(list(argv)))


def test_fresh_run_takes_the_command_line(tmp_path):
    config = _config("--run-dir", str(tmp_path), "--batch-tokens", "4000", "--quiet")
    assert config.batch_tokens == 4000 and config.warmup_steps == 800 and not config.progress
    assert config.export_dir == tmp_path / "export"


def test_resume_keeps_the_saved_settings(tmp_path):
    saved = {"batch_tokens": 4000, "warmup_steps": 400, "max_epochs": 14, "max_steps": 3}
    (tmp_path / "config.json").write_text(json.dumps({**saved, "export_dir": str(tmp_path / "x")}))
    config = _config("--run-dir", str(tmp_path), "--resume", "--max-epochs", "20")
    assert (config.batch_tokens, config.warmup_steps) == (4000, 400)
    assert config.max_epochs == 20 and config.max_steps is None  # limits may change
    assert config.export_dir == tmp_path / "x"
    with pytest.raises(EightbitError, match="started with 4000"):
        _config("--run-dir", str(tmp_path), "--resume", "--batch-tokens", "6000")
    same = _config("--run-dir", str(tmp_path), "--resume", "--batch-tokens", "4000")
    assert same.batch_tokens == 4000
