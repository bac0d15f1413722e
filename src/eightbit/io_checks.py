"""Validation of a saved model's files before anything is built from them (used by ``eightbit.io``).

Every value read from ``eightbit.json`` or ``model.safetensors`` is untrusted: these checks give
each kind of damage one :class:`ModelFormatError` with a one-line message, and bound what a
loader may allocate by what the weights file actually holds (a config that claims a billion
layers, or a layer shape the file does not store, is refused before it costs memory or time).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from eightbit.config import QATConfig, QuantConfig
from eightbit.errors import ModelFormatError

# the architecture may need this many more elements than the file stores (FP32 skeleton before
# the INT8 modules replace its layers, plus tables such as sinusoidal positions it rebuilds)
SKELETON_ELEMENTS_FACTOR = 2
SKELETON_ELEMENTS_SLACK = 1 << 20

_TOP_LEVEL_FIELDS = {
    "architecture": dict,
    "modules": dict,
    "tensors": dict,
    "aliases": dict,
    "quantization": dict,
    "extra": dict,
    "derived": list,
}
_ACTIVATIONS = ("none", "relu", "relu6")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_metadata_fields(metadata: dict[str, Any], where: str) -> None:
    """Types of the top-level fields, tensor specs, aliases and derived patterns."""
    for key, kind in _TOP_LEVEL_FIELDS.items():
        if key not in metadata and key in ("quantization", "extra", "derived"):
            continue  # optional
        if not isinstance(metadata.get(key), kind):
            raise ModelFormatError(f"{where}: field {key!r} missing or not a {kind.__name__}")
    for name, spec in metadata["tensors"].items():
        shape = spec.get("shape") if isinstance(spec, dict) else None
        if (
            not isinstance(spec, dict)
            or not isinstance(spec.get("dtype"), str)
            or not isinstance(shape, list)
            or not all(_is_int(n) and n >= 0 for n in shape)
        ):
            raise ModelFormatError(
                f"{where}: tensor entry {name!r} must be {{'dtype': str, 'shape': [int, ...]}}"
            )
    for alias, source in metadata["aliases"].items():
        if not isinstance(source, str):
            raise ModelFormatError(f"{where}: alias {alias!r} must name a stored tensor")
    if not all(isinstance(p, str) for p in metadata.get("derived", [])):
        raise ModelFormatError(f"{where}: field 'derived' must be a list of name patterns")
    if not all(isinstance(r, dict) for r in metadata["modules"].values()):
        raise ModelFormatError(f"{where}: every entry of 'modules' must be an object")


def _expect(record: dict[str, Any], key: str, check: Any, what: str, where: str) -> Any:
    value = record.get(key)
    if not check(value):
        raise ModelFormatError(f"{where}: field {key!r} is {value!r}; expected {what}")
    return value


def _stored_shape(tensors: dict[str, torch.Tensor], name: str, where: str) -> list[int]:
    if name not in tensors:
        raise ModelFormatError(f"{where}: the weights file has no tensor {name!r}")
    return list(tensors[name].shape)


def check_module_record(
    name: str,
    record: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    backends: list[str],
    directory: str,
) -> None:
    """A QuantLinear / QuantEmbedding record: field types, and dimensions the file stores."""
    where = f"{directory}: module {name!r}"
    positive = lambda v: _is_int(v) and v > 0  # noqa: E731
    kind = record.get("type")
    if kind == "QuantLinear":
        out_features = _expect(record, "out_features", positive, "a positive int", where)
        in_features = _expect(record, "in_features", positive, "a positive int", where)
        _expect(record, "mode", lambda v: v in ("static", "dynamic"), "static or dynamic", where)
        _expect(record, "backend", lambda v: v in backends, f"one of {backends}", where)
        _expect(record, "activation", lambda v: v in _ACTIVATIONS, f"one of {_ACTIVATIONS}", where)
        for flag in ("has_bias", "per_token", "has_output_qparams"):
            _expect(record, flag, lambda v: isinstance(v, bool), "true or false", where)
        expected = [out_features, in_features]
    elif kind == "QuantEmbedding":
        rows = _expect(record, "num_embeddings", positive, "a positive int", where)
        dim = _expect(record, "embedding_dim", positive, "a positive int", where)
        _expect(
            record,
            "padding_idx",
            lambda v: v is None or (_is_int(v) and -rows <= v < rows),
            f"null or an int in [-{rows}, {rows})",
            where,
        )
        expected = [rows, dim]
    else:
        raise ModelFormatError(f"{where}: unknown module type {kind!r}")
    stored = _stored_shape(tensors, f"{name}.weight" if name else "weight", where)
    if stored != expected:
        raise ModelFormatError(f"{where}: record says weight {expected}, the file stores {stored}")


def _integers(value: Any, key: str = "") -> list[tuple[str, int]]:
    if _is_int(value):
        return [(key, value)]
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in _integers(v, str(k))]
    if isinstance(value, list):
        return [pair for v in value for pair in _integers(v, key)]
    return []


def check_config_sizes(
    config: dict[str, Any], tensors: dict[str, torch.Tensor], where: str
) -> None:
    """Refuse a config whose sizes the stored tensors cannot back, before building from it.

    No dimension of a real model exceeds the largest stored dimension, and no layer count exceeds
    the number of stored tensors; a config that claims more would only cost time and memory.
    """
    largest_dim = max((max(t.shape, default=0) for t in tensors.values()), default=0)
    limit = max(largest_dim, len(tensors))
    for key, value in _integers(config):
        bound = len(tensors) if "layers" in key else limit
        if value > bound:
            raise ModelFormatError(
                f"{where}: config value {key}={value} is larger than the stored weights allow "
                f"(at most {bound})"
            )


def check_skeleton_size(skeleton: nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """The (meta-device) architecture must not need far more elements than the file stores."""
    stored = sum(t.numel() for t in tensors.values())
    needed = sum(t.numel() for t in skeleton.state_dict().values())
    needed += sum(b.numel() for _, b in skeleton.named_buffers())
    limit = SKELETON_ELEMENTS_FACTOR * stored + SKELETON_ELEMENTS_SLACK
    if needed > limit:
        raise ModelFormatError(
            f"{where}: the architecture needs {needed:,} elements but the file stores "
            f"{stored:,}; the config does not match the weights"
        )


def _read_safetensors(weights: Path, format_name: str) -> dict[str, torch.Tensor]:
    if not weights.is_file():
        raise ModelFormatError(f"{weights}: missing; expected the model's weights file")
    try:
        with safe_open(str(weights), framework="pt") as file:
            header = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ModelFormatError(f"{weights}: not a readable safetensors file ({err})") from None
    if header.get("format") != format_name:
        raise ModelFormatError(
            f"{weights}: a safetensors file, but not an {format_name} weights file "
            f"(its header format is {header.get('format')!r})"
        )
    return tensors


def read_checked_tensors(
    weights: Path, metadata: dict[str, Any], format_name: str
) -> dict[str, torch.Tensor]:
    """The file's tensors, each checked against the metadata; aliases resolved."""
    tensors = _read_safetensors(weights, format_name)
    expected = metadata["tensors"]
    if set(tensors) != set(expected):
        missing = sorted(set(expected) - set(tensors))[:5]
        unexpected = sorted(set(tensors) - set(expected))[:5]
        raise ModelFormatError(
            f"{weights}: tensors do not match metadata (missing {missing}, unexpected {unexpected})"
        )
    for name, tensor in tensors.items():
        spec = expected[name]
        if (
            str(tensor.dtype).removeprefix("torch.") != spec["dtype"]
            or list(tensor.shape) != spec["shape"]
        ):
            raise ModelFormatError(
                f"{weights}: tensor {name!r} is {tensor.dtype} "
                f"{list(tensor.shape)}, metadata says {spec}"
            )
    for alias, source in metadata["aliases"].items():
        if source not in tensors:
            raise ModelFormatError(f"{weights}: alias {alias!r} points to missing {source!r}")
        tensors[alias] = tensors[source]
    return tensors


def check_fits(skeleton: nn.Module, tensors: dict[str, torch.Tensor], where: Path) -> None:
    """Every stored tensor that the architecture also has must match its shape and dtype."""
    state = skeleton.state_dict()
    for name, tensor in tensors.items():
        if name in state and (
            state[name].shape != tensor.shape or state[name].dtype != tensor.dtype
        ):
            raise ModelFormatError(
                f"{where}: tensor {name!r} is {tensor.dtype} "
                f"{list(tensor.shape)}, the architecture expects "
                f"{state[name].dtype} {list(state[name].shape)}"
            )


def _field_value(default: object, value: object) -> object:
    """``value`` in the type of the config field whose default is ``default``, or ValueError."""
    if isinstance(default, bool) and isinstance(value, bool):
        return value
    if isinstance(default, int) and not isinstance(default, bool) and type(value) is int:
        return value
    if isinstance(default, float) and type(value) in (int, float):
        return float(value)
    if isinstance(default, str) and isinstance(value, str):
        return value
    if (
        isinstance(default, tuple)
        and isinstance(value, list)
        and all(isinstance(v, str) for v in value)
    ):
        return tuple(value)
    raise ValueError(f"{value!r} is not a {type(default).__name__}")


def config_from_record(record: dict[str, Any], where: Path) -> QuantConfig | QATConfig | None:
    """The saved quantization config, each field checked against its type."""
    kinds = {"QuantConfig": QuantConfig, "QATConfig": QATConfig}
    kind = record.get("kind")
    cls = kinds.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return None
    values = {}
    for field in dataclasses.fields(cls):
        if field.name in record:
            try:
                values[field.name] = _field_value(field.default, record[field.name])
            except ValueError as err:
                raise ModelFormatError(
                    f"{where}: quantization field {field.name!r}: {err}"
                ) from None
    return cls(**values)
