"""What every model adapter shares: load errors, and INT8 directories that carry a tokenizer."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from eightbit.errors import EightbitError


def encode_batch(tokenizer: Any, texts: Sequence[str], max_length: int) -> dict[str, Tensor]:
    """Padded, truncated model inputs (``input_ids``, ``attention_mask``) for one batch."""
    return dict(
        tokenizer(
            list(texts), return_tensors="pt", padding=True, truncation=True, max_length=max_length
        )
    )


class ModelLoadError(EightbitError):
    """A checkpoint directory is missing files or does not hold the expected model family."""


def check_tokenizer_fits(tokenizer: Any, model: nn.Module, directory: Path) -> None:
    """Refuse a tokenizer that can produce ids the model's embedding table does not have."""
    vocab_size = getattr(model.config, "vocab_size", None)
    if isinstance(vocab_size, int) and len(tokenizer) > vocab_size:
        raise ModelLoadError(
            f"{directory}: tokenizer has {len(tokenizer)} tokens, the model "
            f"only {vocab_size}; they do not belong together"
        )


def load_quantized_with_tokenizer(directory: Path, tokenizer_class: Any) -> tuple[nn.Module, Any]:
    """An eightbit INT8 directory (:func:`eightbit.load`) and the tokenizer saved beside it."""
    from eightbit.io import load

    model = load(directory)
    try:
        tokenizer = tokenizer_class.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError, RuntimeError) as err:  # RuntimeError: a corrupt .spm file
        raise ModelLoadError(f"{directory}: cannot load the tokenizer ({err})") from None
    check_tokenizer_fits(tokenizer, model, directory)
    return model, tokenizer


def save_with_tokenizer(
    model: nn.Module,
    tokenizer: Any,
    path: str | os.PathLike[str],
    extra: dict[str, Any] | None = None,
    derived: tuple[str, ...] = (),
) -> Path:
    """Save an INT8 model with its tokenizer, atomically (:func:`eightbit.save`)."""
    from eightbit.io import save

    return save(model, path, extra=extra, write_files=tokenizer.save_pretrained, derived=derived)
