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
from safetensors.torch import save_file
from torch import nn

from eightbit.errors import ModelFormatError
from eightbit.fusion import chain_feed_forward
from eightbit.io_checks import (
    check_config_sizes,
    check_fits,
    check_metadata_fields,
    check_module_record,
    check_skeleton_size,
    config_from_record,
    read_checked_tensors,
)
from eightbit.kernels import backend_names
from eightbit.nn import QuantEmbedding, QuantLinear

FORMAT_NAME = "eightbit-int8"
FORMAT_VERSION = 1
METADATA_FILE = "eightbit.json"
WEIGHTS_FILE = "model.safetensors"

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "METADATA_FILE",
    "WEIGHTS_FILE",
    "ModelFormatError",
    "check_save_target",
    "load",
    "read_metadata",
    "save",
]


def _module_record(module: nn.Module) -> dict[str, Any] | None:
    if isinstance(module, QuantLinear):
        return {
            "type": "QuantLinear",
            "in_features": module.in_features,
            "out_features": module.out_features,
            "mode": module.mode,
            "has_bias": module.bias is not None,
            "per_token": module.per_token,
            "has_output_qparams": module.has_output_qparams,
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


def check_save_target(path: str | os.PathLike[str]) -> Path:
    """``path`` if :func:`save` may write there: new, empty, or an eightbit model already."""
    target = Path(path)
    if target.exists() and (
        not target.is_dir() or (any(target.iterdir()) and not (target / METADATA_FILE).exists())
    ):
        raise ModelFormatError(
            f"{target}: exists and is not an eightbit model directory; refusing to overwrite it"
        )
    return target


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
    target = check_save_target(path)
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
        metadata = json.loads(meta_path.read_bytes().decode("utf-8"))
    except OSError as err:
        raise ModelFormatError(f"{meta_path}: cannot be read ({err.strerror})") from None
    except (ValueError, RecursionError) as err:  # bad UTF-8 or JSON, absurd nesting
        raise ModelFormatError(f"{meta_path}: not valid JSON ({err})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{meta_path}: not an {FORMAT_NAME} metadata file")
    version = metadata.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise ModelFormatError(
            f"{meta_path}: format_version {version!r} is not supported; expected {FORMAT_VERSION}"
        )
    check_metadata_fields(metadata, str(meta_path))
    return metadata


def _construct(cls: type[nn.Module], config: dict[str, Any], device: str, where: Path) -> nn.Module:
    import transformers

    try:
        with torch.device(device):
            return cls(transformers.AutoConfig.for_model(**config))
    # the config is untrusted input to third-party code: whatever it raises means "invalid"
    except Exception as err:
        raise ModelFormatError(
            f"{where}: invalid model config ({type(err).__name__}: {err})"
        ) from None


def _build_architecture(
    arch: dict[str, Any], model: nn.Module | None, where: Path, tensors: dict[str, torch.Tensor]
) -> nn.Module:
    if model is not None:
        return model
    if arch.get("library") != "transformers":
        raise ModelFormatError(
            f"{where}: a {arch.get('class')!r} model cannot be rebuilt from "
            "metadata; pass the float model to load(path, model=...)"
        )
    import transformers  # heavy: only when a transformers model is loaded

    name, config = arch.get("class"), arch.get("config")
    cls = getattr(transformers, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        raise ModelFormatError(f"{where}: unknown transformers class {name!r}")
    if not isinstance(config, dict):
        raise ModelFormatError(f"{where}: architecture config missing or not an object")
    check_config_sizes(config, tensors, str(where))
    check_skeleton_size(_construct(cls, config, "meta", where), tensors, str(where))
    return _construct(cls, config, "cpu", where)


def _rebuild_module(record: dict[str, Any]) -> nn.Module:
    """A module from a record :func:`check_module_record` has validated."""
    if record["type"] == "QuantLinear":
        module = QuantLinear(
            record["in_features"],
            record["out_features"],
            mode=record["mode"],
            has_bias=record["has_bias"],
            per_token=record["per_token"],
            has_output_qparams=record["has_output_qparams"],
            backend=record["backend"],
        )
        module.activation = record["activation"]
        return module
    return QuantEmbedding(record["num_embeddings"], record["embedding_dim"], record["padding_idx"])


def _set_submodule(model: nn.Module, name: str, module: nn.Module, where: Path) -> None:
    parent_name, _, child = name.rpartition(".")
    try:
        parent = model.get_submodule(parent_name) if parent_name else model
    except AttributeError:
        parent = None
    if parent is None or child not in parent._modules:
        raise ModelFormatError(f"{where}: module {name!r} does not exist in the architecture")
    setattr(parent, child, module)


def load(path: str | os.PathLike[str], model: nn.Module | None = None) -> nn.Module:
    """Load a model saved by :func:`save`; ``model`` is the float architecture for plain torch
    models (transformers models are rebuilt from the metadata).

    Feed-forward blocks of models saved unchained (before the integer chain existed) are
    chained as :func:`eightbit.convert` chains them.

    Never executes code from the files. Any problem with them (missing, truncated, corrupt,
    foreign, other format version, a config that does not match the weights) raises
    :class:`ModelFormatError` with a one-line message, and nothing else.
    """
    directory = Path(path)
    metadata = read_metadata(directory)
    tensors = read_checked_tensors(directory / WEIGHTS_FILE, metadata, FORMAT_NAME)
    skeleton = _build_architecture(metadata["architecture"], model, directory, tensors)
    backends = backend_names()
    for name, record in metadata["modules"].items():
        check_module_record(name, record, tensors, backends, str(directory))
        _set_submodule(skeleton, name, _rebuild_module(record), directory)
    check_fits(skeleton, tensors, directory)
    try:
        result = skeleton.load_state_dict(tensors, strict=False, assign=True)
    except RuntimeError as err:
        raise ModelFormatError(
            f"{directory}: weights do not fit the architecture ({err})"
        ) from None
    derived = metadata.get("derived", [])
    missing = [
        k for k in result.missing_keys if not any(fnmatch.fnmatchcase(k, p) for p in derived)
    ]
    if missing or result.unexpected_keys:
        raise ModelFormatError(
            f"{directory}: weights do not fit the architecture (missing "
            f"{missing[:5]}, unexpected {result.unexpected_keys[:5]})"
        )
    skeleton._eightbit_config = config_from_record(metadata.get("quantization", {}), directory)
    # models saved before convert chained fc1 -> ReLU -> fc2 get the chain now: it is derived
    # from saved tensors only (fc1's output qparams are fc2's input qparams), so the result is
    # what convert gives today; chained models are left as they are
    chain_feed_forward(skeleton)
    from eightbit.engine.hf_attention import enable_for_int8

    enable_for_int8(skeleton)  # as quantize does: native decode attention on the avx2 backend
    skeleton.eval()
    return skeleton
