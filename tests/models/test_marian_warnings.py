"""Loading a Marian model does not print MarianTokenizer's sacremoses advice (eightbit.models)."""

import os
import subprocess
import sys
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "marian-en-es"


def test_loading_a_marian_model_does_not_advise_sacremoses():
    code = f"from eightbit.models.marian import load_marian; load_marian({str(SHIPPED)!r})"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "default"}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert "sacremoses" not in run.stderr
