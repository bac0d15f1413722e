"""Which model family a checkpoint directory holds, read from its ``config.json`` (no weights).

The command line picks the task by it: a Marian checkpoint is a translation model (dev BLEU), a
BERT-family checkpoint a sequence classifier (dev accuracy).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eightbit.models.bert import SUPPORTED_MODEL_TYPES
from eightbit.models.common import ModelLoadError

TRANSLATION = "translation"
CLASSIFICATION = "classification"


def read_config(directory: Path) -> dict[str, Any] | None:
    """``config.json`` of ``directory`` as a dict; ``None`` if there is none."""
    path = directory / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{path}: cannot read config.json ({err})") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path}: not a JSON object; expected a Hugging Face config")
    return config


def model_family(directory: Path) -> str | None:
    """``translation`` (Marian), ``classification`` (BERT family), or ``None`` when the
    directory has no readable ``config.json`` (the loaders then say what is missing)."""
    config = read_config(directory) if directory.is_dir() else None
    if config is None:
        return None
    model_type = config.get("model_type")
    if model_type == "marian":
        return TRANSLATION
    if model_type in SUPPORTED_MODEL_TYPES:
        return CLASSIFICATION
    raise ModelLoadError(
        f"{directory}: model_type {model_type!r}; expected marian or one of "
        f"{', '.join(SUPPORTED_MODEL_TYPES)}"
    )


def has_classification_head(config: dict[str, Any]) -> bool:
    """Whether the config names a ``...ForSequenceClassification`` architecture."""
    architectures = config.get("architectures") or ()
    return any("ForSequenceClassification" in str(a) for a in architectures)


def label_names(config: dict[str, Any]) -> tuple[str, ...] | None:
    """The checkpoint's label names in index order; ``None`` for Hugging Face's default
    ``LABEL_0, LABEL_1, ...`` (no names given) or a malformed ``id2label``."""
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        return None
    try:
        names = tuple(str(id2label[str(i)]) for i in range(len(id2label)))
    except KeyError:
        return None
    if names == tuple(f"LABEL_{i}" for i in range(len(names))):
        return None
    return names
