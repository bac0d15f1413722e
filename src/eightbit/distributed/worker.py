"""What a worker runs: load the model once, then translate one shard per call.

Plain Python, no Ray import: :mod:`eightbit.distributed.ray_pool` wraps :class:`ShardTranslator`
as a Ray actor. Every shard goes through :func:`translate_shard`, on the worker's one
:class:`eightbit.models.marian.Translator` (the decoding plan built once per worker, not per
shard), so a faster decoding engine behind it is picked up here without change.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from eightbit.distributed.plan import ShardSettings
from eightbit.models.marian import Translation, Translator, load_translation_model


def translate_shard(
    translator: Translator, sentences: Sequence[str], settings: ShardSettings
) -> list[Translation]:
    """Translate one shard's sentences (given in length-sorted order) with ``settings``."""
    return translator.translate(
        sentences,
        beam=settings.beam,
        batch_tokens=settings.batch_tokens,
        max_sentences=settings.max_sentences,
        progress=False,
    )


@dataclass(frozen=True)
class ShardResult:
    """A translated shard, and which process on which host translated it."""

    index: int
    translations: list[Translation]
    pid: int
    host: str


class ShardTranslator:
    """Holds one loaded model (FP32 or INT8) and translates shards with it."""

    def __init__(self, model_dir: str, threads: int, settings: ShardSettings):
        torch.set_num_threads(threads)  # this worker's share of its node's cores
        model, tokenizer = load_translation_model(Path(model_dir))
        # thread workers: no forking inside a Ray actor (its gRPC threads are not fork-safe)
        self.translator = Translator(model, tokenizer, engine=settings.engine, worker_kind="thread")
        self.settings = settings

    def translate(self, index: int, sentences: list[str]) -> ShardResult:
        """Translate shard ``index``."""
        outputs = translate_shard(self.translator, sentences, self.settings)
        return ShardResult(index, outputs, os.getpid(), socket.gethostname())
