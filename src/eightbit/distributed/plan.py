"""Cut a translation job into shards, and name the job by what determines its output.

A shard is a run of consecutive length-sorted, token-packed batches. Because greedy packing
restarts cleanly at a batch boundary, translating a shard's sentences (in sorted order) packs
them into exactly the batches they had in the whole job: a sharded run computes the same
batches as a single-process :func:`eightbit.models.marian.translate`, so its output is the same.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from eightbit.models.common import ModelLoadError
from eightbit.models.marian import MAX_SENTENCES, default_batch_tokens

FORMAT_VERSION = 1  # bump when the shard files or the key change meaning


@dataclass(frozen=True)
class ShardSettings:
    """Everything besides model and input that decides a sharded run's output and its shards.
    ``batch_tokens``: default the single-process default for ``beam``
    (:func:`eightbit.models.marian.default_batch_tokens`), so shards hold the same batches."""

    beam: int = 1
    batch_tokens: int | None = None
    max_sentences: int | None = MAX_SENTENCES
    shard_sentences: int = 256  # a shard closes at the first batch boundary past this many
    engine: str = "eightbit"  # decoding engine of every shard (see models.marian.ENGINES)

    def __post_init__(self) -> None:
        if self.batch_tokens is None:
            object.__setattr__(self, "batch_tokens", default_batch_tokens(self.beam))
        if self.beam < 1 or self.batch_tokens < 1 or self.shard_sentences < 1:
            raise ValueError("beam, batch_tokens and shard_sentences must be positive")


def plan_shards(batches: Sequence[Sequence[int]], shard_sentences: int) -> list[list[int]]:
    """Group consecutive ``batches`` into shards of about ``shard_sentences`` sentences each.

    A shard is the flat list of its batches' sentence indices, in batch order; a batch is never
    split, so a shard may hold more than ``shard_sentences`` sentences.
    """
    shards: list[list[int]] = []
    current: list[int] = []
    for batch in batches:
        current.extend(batch)
        if len(current) >= shard_sentences:
            shards.append(current)
            current = []
    if current:
        shards.append(current)
    return shards


def model_digest(model_dir: str | os.PathLike[str]) -> str:
    """SHA-256 over the names and contents of every file in a model directory."""
    root = Path(model_dir)
    if not root.is_dir():
        raise ModelLoadError(f"{root}: not a directory; expected a model directory")
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        with path.open("rb") as handle:
            file_hash = hashlib.file_digest(handle, "sha256").hexdigest()
        digest.update(f"{path.relative_to(root).as_posix()}\0{file_hash}\n".encode())
    return digest.hexdigest()


def run_key(
    model_dir: str | os.PathLike[str], sentences: Sequence[str], settings: ShardSettings
) -> str:
    """A hash of model + input + settings: a work dir is only resumed under the same key."""
    digest = hashlib.sha256()
    header = {"format": FORMAT_VERSION, "model": model_digest(model_dir), **asdict(settings)}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for sentence in sentences:
        digest.update(json.dumps(sentence).encode() + b"\n")  # unambiguous even with newlines
    return digest.hexdigest()
