"""Save and load INT8 models: safetensors weights + versioned JSON metadata, no pickle anywhere.

Layout of a saved model directory::

    eightbit.json        format name and version, architecture, quantization config, modules
    model.safetensors    every tensor of the state dict (tied int8 copies stored once)

Loading never executes code from the files: the architecture is rebuilt from its class name in
``transformers`` (or from a float model the caller passes), the quantized modules are rebuilt from
the metadata, and every tensor is checked for name, dtype and shape before it is loaded.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from eightbit.config import QATConfig, QuantConfig
from eightbit.errors import EightbitError
from eightbit.nn import QuantEmbedding, QuantLinear

FORMAT_NAME = "eightbit-int8"
FORMAT_VERSION = 1
METADATA_FILE = "eightbit.json"
WEIGHTS_FILE = "model.safetensors"


class ModelFormatError(EightbitError):
    """A saved model directory is missing, corrupt, foreign or of an unsupported version."""


def _module_record(module: nn.Module) -> dict[str, Any] | None:
    if isinstance(module, QuantLinear):
        return {
            "type": "QuantLinear",
            "in_features": module.in_features,
            "out_features": module.out_features,
            "mode": module.mode,
            "has_bias": module.bias is not None,
            "per_token": module.per_token,
            "has_output_qparams": hasattr(module, "output_scale"),
            "backend": module.backend,
            "activation": module.activation,
        }
    if isinstance(module, QuantEmbedding):
        return {
            "type": "QuantEmbedding",
            "num_embeddings": module.num_embeddings,
            "embedding_dim": module.embedding_dim,
            "padding_idx": module.padding_idx,
        }
    return None


def _architecture(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        return {
            "library": "transformers",
            "class": type(model).__name__,
            "config": config.to_dict(),
        }
    return {"library": "torch", "class": type(model).__name__}


def _quant_config(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "_eightbit_config", None)
    if config is None:
        return {}
    return {"kind": type(config).__name__, **dataclasses.asdict(config)}


def _dedupe(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Store each shared tensor once; aliases map the other names to the stored one."""
    stored: dict[tuple[int, int, tuple[int, ...]], str] = {}
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for name, tensor in state.items():
        key = (tensor.data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if tensor.numel() and key in stored:
            aliases[name] = stored[key]
        else:
            stored[key] = name
            tensors[name] = tensor.detach().contiguous().clone()
    return tensors, aliases


def save(
    model: nn.Module,
    path: str | os.PathLike[str],
    extra: dict[str, Any] | None = None,
    write_files: Callable[[Path], object] | None = None,
    derived: tuple[str, ...] = (),
) -> Path:
    """Save a quantized model to directory ``path`` atomically (all or nothing).

    ``extra`` is stored under ``"extra"`` in the metadata (e.g. calibration details), after
    what the model itself carries in ``_eightbit_extra`` (e.g. the methods ``auto`` chose);
    ``write_files(directory)`` may add files that belong with the model (e.g. a tokenizer).
    ``derived``: glob patterns of state-dict keys the architecture rebuilds by itself (e.g.
    sinusoidal position tables); they are not stored.
    """
    target = Path(path)
    if target.exists() and (
        not target.is_dir() or (any(target.iterdir()) and not (target / METADATA_FILE).exists())
    ):
        raise ModelFormatError(
            f"{target}: exists and is not an eightbit model directory; refusing to overwrite it"
        )
    modules = {name: rec for name, m in model.named_modules() if (rec := _module_record(m))}
    state = {
        k: v
        for k, v in model.state_dict().items()
        if not any(fnmatch.fnmatchcase(k, p) for p in derived)
    }
    tensors, aliases = _dedupe(state)
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "architecture": _architecture(model),
        "quantization": _quant_config(model),
        "modules": modules,
        "aliases": aliases,
        "tensors": {
            k: {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape)}
            for k, v in tensors.items()
        },
        "extra": {**getattr(model, "_eightbit_extra", {}), **(extra or {})},
        "derived": list(derived),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        save_file(tensors, str(staging / WEIGHTS_FILE), metadata={"format": FORMAT_NAME})
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=1, sort_keys=True))
        if write_files is not None:
            write_files(staging)
        _replace_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _replace_dir(staging: Path, target: Path) -> None:
    if not target.exists():
        os.replace(staging, target)
        return
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated metadata of a saved model directory."""
    directory = Path(path)
    meta_path = directory / METADATA_FILE
    if not directory.is_dir():
        raise ModelFormatError(f"{directory}: not a directory; expected a saved eightbit model")
    if not meta_path.is_file():
        raise ModelFormatError(f"{meta_path}: missing; expected an eightbit model directory")
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFormatError(f"{meta_path}: not valid JSON ({err})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{meta_path}: not an {FORMAT_NAME} metadata file")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ModelFormatError(
            f"{meta_path}: format_version {metadata.get('format_version')!r} "
            f"is not supported; expected {FORMAT_VERSION}"
        )
    for key, kind in (
        ("architecture", dict),
        ("modules", dict),
        ("tensors", dict),
        ("aliases", dict),
    ):
        if not isinstance(metadata.get(key), kind):
            raise ModelFormatError(f"{meta_path}: field {key!r} missing or not a {kind.__name__}")
    return metadata


def _build_architecture(arch: dict[str, Any], model: nn.Module | None, where: Path) -> nn.Module:
    if model is not None:
        return model
    if arch.get("library") != "transformers":
        raise ModelFormatError(
            f"{where}: a {arch.get('class')!r} model cannot be rebuilt from "
            "metadata; pass the float model to load(path, model=...)"
        )
    import transformers  # heavy: only when a transformers model is loaded

    cls = getattr(transformers, str(arch.get("class")), None)
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        raise ModelFormatError(f"{where}: unknown transformers class {arch.get('class')!r}")
    try:
        config = transformers.AutoConfig.for_model(**arch["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFormatError(f"{where}: invalid model config ({err})") from None
    return cls(config)


def _rebuild_module(record: dict[str, Any], where: str) -> nn.Module:
    try:
        if record["type"] == "QuantLinear":
            module = QuantLinear(
                int(record["in_features"]),
                int(record["out_features"]),
                mode=record["mode"],
                has_bias=bool(record["has_bias"]),
                per_token=bool(record["per_token"]),
                has_output_qparams=bool(record["has_output_qparams"]),
                backend=str(record["backend"]),
            )
            module.activation = record.get("activation", "none")
            return module
        if record["type"] == "QuantEmbedding":
            return QuantEmbedding(
                int(record["num_embeddings"]), int(record["embedding_dim"]), record["padding_idx"]
            )
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFormatError(f"{where}: invalid module record ({err})") from None
    raise ModelFormatError(f"{where}: unknown module type {record.get('type')!r}")


def _set_submodule(model: nn.Module, name: str, module: nn.Module, where: Path) -> None:
    parent_name, _, child = name.rpartition(".")
    try:
        parent = model.get_submodule(parent_name) if parent_name else model
    except AttributeError:
        raise ModelFormatError(
            f"{where}: module {name!r} does not exist in the architecture"
        ) from None
    if not hasattr(parent, child):
        raise ModelFormatError(f"{where}: module {name!r} does not exist in the architecture")
    setattr(parent, child, module)


def _read_tensors(weights: Path, metadata: dict[str, Any]) -> dict[str, torch.Tensor]:
    if not weights.is_file():
        raise ModelFormatError(f"{weights}: missing")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFormatError(f"{weights}: not a readable safetensors file ({err})") from None
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
            not isinstance(spec, dict)
            or str(tensor.dtype).removeprefix("torch.") != spec.get("dtype")
            or list(tensor.shape) != spec.get("shape")
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


def load(path: str | os.PathLike[str], model: nn.Module | None = None) -> nn.Module:
    """Load a model saved by :func:`save`; ``model`` is the float architecture for plain torch
    models (transformers models are rebuilt from the metadata). Raises :class:`ModelFormatError`.
    """
    directory = Path(path)
    metadata = read_metadata(directory)
    skeleton = _build_architecture(metadata["architecture"], model, directory)
    for name, record in metadata["modules"].items():
        if not isinstance(record, dict):
            raise ModelFormatError(f"{directory}: module record {name!r} is not an object")
        _set_submodule(skeleton, name, _rebuild_module(record, f"{directory}:{name}"), directory)
    tensors = _read_tensors(directory / WEIGHTS_FILE, metadata)
    state = skeleton.state_dict()
    for name, tensor in tensors.items():
        if name in state and (
            state[name].shape != tensor.shape or state[name].dtype != tensor.dtype
        ):
            raise ModelFormatError(
                f"{directory}: tensor {name!r} is {tensor.dtype} "
                f"{list(tensor.shape)}, the architecture expects "
                f"{state[name].dtype} {list(state[name].shape)}"
            )
    result = skeleton.load_state_dict(tensors, strict=False, assign=True)
    derived = metadata.get("derived", [])
    missing = [
        k for k in result.missing_keys if not any(fnmatch.fnmatchcase(k, str(p)) for p in derived)
    ]
    if missing or result.unexpected_keys:
        raise ModelFormatError(
            f"{directory}: weights do not fit the architecture (missing "
            f"{missing[:5]}, unexpected {result.unexpected_keys[:5]})"
        )
    skeleton._eightbit_config = _config_from_metadata(metadata.get("quantization", {}))
    skeleton.eval()
    return skeleton


def _config_from_metadata(record: dict[str, Any]) -> QuantConfig | QATConfig | None:
    kinds = {"QuantConfig": QuantConfig, "QATConfig": QATConfig}
    cls = kinds.get(record.get("kind", ""))
    if cls is None:
        return None
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in record.items() if k in fields}
    return cls(**values)
