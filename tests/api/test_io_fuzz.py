"""Fuzzing the saved-model format: corrupted files give ModelFormatError and nothing else.

Hypothesis mutates the two files of a saved tiny Marian model (bytes of ``model.safetensors``,
values, types and keys of ``eightbit.json``); loading must then either succeed (a change inside
the tensor data is not detectable) or raise :class:`eightbit.io.ModelFormatError` with a one-line
message. Any other exception, a hang or a crash fails the test.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eightbit
from eightbit.io import METADATA_FILE, WEIGHTS_FILE, ModelFormatError
from tests.helpers import tiny_marian

FUZZ = settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    model = tiny_marian()
    ids = torch.randint(0, 60, (2, 6), generator=torch.Generator().manual_seed(0))
    int8 = eightbit.quantize(
        model, [{"input_ids": ids, "decoder_input_ids": ids[:, :4]}], eightbit.QuantConfig("minmax")
    )
    return eightbit.save(int8, tmp_path_factory.mktemp("fuzz") / "model")


def _copy(saved: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(saved, target)
    return target


def _load_only_documented_error(path: Path) -> None:
    try:
        eightbit.load(path)
    except ModelFormatError as err:
        assert "\n" not in str(err), f"message is not one line: {err!r}"


def _header_end(data: bytes) -> int:
    return 8 + struct.unpack("<Q", data[:8])[0]


@st.composite
def byte_edits(draw: st.DrawFn, size: int, header_end: int) -> tuple[str, int, bytes]:
    """One edit of a safetensors file, most of them inside the 8-byte length and JSON header."""
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite"]))
    near_header = st.integers(0, min(header_end + 8, size - 1))
    position = draw(near_header | st.integers(0, size - 1))
    payload = draw(st.binary(min_size=1, max_size=8))
    return kind, position, payload


def _apply(data: bytes, edit: tuple[str, int, bytes]) -> bytes:
    kind, position, payload = edit
    if kind == "flip":
        return (
            data[:position] + bytes([data[position] ^ (1 << payload[0] % 8)]) + data[position + 1 :]
        )
    if kind == "truncate":
        return data[:position]
    if kind == "insert":
        return data[:position] + payload + data[position:]
    return data[:position] + payload + data[position + len(payload) :]


@FUZZ
@given(data=st.data())
def test_mutated_safetensors_gives_only_the_format_error(saved_model, tmp_path, data):
    path = _copy(saved_model, tmp_path)
    original = (path / WEIGHTS_FILE).read_bytes()
    edits = data.draw(
        st.lists(byte_edits(len(original), _header_end(original)), min_size=1, max_size=3)
    )
    mutated = original
    for edit in edits:
        if mutated:
            mutated = _apply(mutated, (edit[0], edit[1] % len(mutated), edit[2]))
    (path / WEIGHTS_FILE).write_bytes(mutated)
    _load_only_documented_error(path)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path inside a JSON document (the root included)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _mutate(document: Any, path: tuple, action: str, value: Any, key: str) -> Any:
    if not path:
        return value
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "add-key" and isinstance(parent[last], dict):
        parent[last][key] = value
    else:
        parent[last] = value
    return document


@FUZZ
@given(data=st.data())
def test_mutated_metadata_gives_only_the_format_error(saved_model, tmp_path, data):
    path = _copy(saved_model, tmp_path)
    document = json.loads((path / METADATA_FILE).read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        # pick a top-level field first, so the small ones are hit as often as the tensor table
        keys = list(document) if isinstance(document, dict) else []
        section = data.draw(st.sampled_from([(), *((key,) for key in keys)]))
        inside = [p for p in _paths(document) if p[: len(section)] == section]
        target = data.draw(st.sampled_from(inside))
        action = data.draw(st.sampled_from(["replace", "delete", "add-key"]))
        value = data.draw(JSON_VALUES)
        key = data.draw(st.text(max_size=5))
        document = _mutate(document, target, action, value, key)
    (path / METADATA_FILE).write_text(json.dumps(document))
    _load_only_documented_error(path)


def test_every_truncation_of_the_header_is_a_format_error(saved_model, tmp_path):
    path = _copy(saved_model, tmp_path)
    original = (path / WEIGHTS_FILE).read_bytes()
    end = _header_end(original)
    for size in range(0, end, max(1, end // 30)):
        (path / WEIGHTS_FILE).write_bytes(original[:size])
        with pytest.raises(ModelFormatError, match="safetensors"):
            eightbit.load(path)


def test_a_pickle_file_is_refused_not_executed(saved_model, tmp_path):
    path = _copy(saved_model, tmp_path)
    torch.save({"weight": torch.zeros(2)}, path / WEIGHTS_FILE)  # a foreign (pickle) file
    with pytest.raises(ModelFormatError, match="safetensors"):
        eightbit.load(path)
