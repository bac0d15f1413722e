import os

import pytest

from eightbit.atomic import write_bytes_atomic, write_text_atomic


def test_atomic_write_gives_the_mode_open_would(tmp_path):
    mask = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "sub" / "report.md", "héllo\n")
        assert path.read_text(encoding="utf-8") == "héllo\n"
        assert path.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(mask)


def test_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    with pytest.raises(TypeError):
        write_bytes_atomic(target, object())  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
