"""``import eightbit`` asks for passive OpenMP waiting before torch loads, unless the user chose."""

import os
import subprocess
import sys

from eightbit import openmp

PROBE = "import os, eightbit; print(os.environ.get('OMP_WAIT_POLICY'))"


def _fresh_import(code: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k not in openmp.POLICY_VARIABLES}
    done = subprocess.run(
        [sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_sets_passive_before_torch_loads():
    assert _fresh_import(PROBE) == "PASSIVE"


def test_a_policy_chosen_by_the_user_is_kept():
    assert _fresh_import(PROBE, OMP_WAIT_POLICY="active") == "active"
    assert _fresh_import(PROBE, GOMP_SPINCOUNT="1000") == "None"


def test_too_late_once_torch_is_loaded(monkeypatch):
    environ: dict[str, str] = {}
    monkeypatch.setattr(openmp.os, "environ", environ)
    assert "torch" in sys.modules
    assert not openmp.prefer_passive_wait() and not environ
    monkeypatch.delitem(sys.modules, "torch")
    assert openmp.prefer_passive_wait() and environ == {"OMP_WAIT_POLICY": "PASSIVE"}
