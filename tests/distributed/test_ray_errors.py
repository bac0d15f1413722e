"""One-line errors, before any heavy work: Ray missing, cluster address unreachable."""

import socket
import sys
import time

import pytest

from eightbit.cli import main
from eightbit.distributed import RayConnectionError, RayNotInstalledError
from eightbit.distributed.ray_pool import check_reachable, import_ray


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_address_fails_fast_with_one_line(tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("hello\n")
    address = f"127.0.0.1:{_unused_port()}"
    start = time.monotonic()
    code = main(["translate", "no/model", str(source), "--output", str(tmp_path / "o"),
                 "--ray", address])  # fmt: skip
    assert code == 2
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and address in err and "cannot connect" in err


@pytest.mark.parametrize("address", ["ray://nohost", "host:port", "ray://:80"])
def test_malformed_address_is_named(address):
    with pytest.raises(RayConnectionError, match="expected auto, host:port"):
        check_reachable(address, 1.0)


def test_missing_ray_says_how_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(RayNotInstalledError):
        import_ray()
    source = tmp_path / "in.txt"
    source.write_text("hello\n")
    assert main(["translate", "m", str(source), "--output", str(tmp_path / "o"), "--ray"]) == 2
    assert "pip install 'eightbit[ray]'" in capsys.readouterr().err


def test_ray_translation_needs_an_output_file(tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("hello\n")
    assert main(["translate", "m", str(source), "--ray"]) == 2
    assert "--output" in capsys.readouterr().err


def test_importing_eightbit_does_not_import_ray():
    import subprocess

    code = "import sys, eightbit, eightbit.cli, eightbit.distributed; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
