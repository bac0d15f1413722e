"""Translate a corpus past one machine: shards on Ray actors, stored as they finish, resumable.

The driver only tokenizes (to plan the shards) and stores results; every node loads the model
from ``model_dir`` itself, so that path must be readable at the same place on every node.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eightbit.atomic import write_text_atomic
from eightbit.distributed.plan import ShardSettings, plan_shards, run_key
from eightbit.distributed.ray_pool import (
    PoolStats,
    RayOptions,
    preflight,
    ray_session,
    run_on_actors,
)
from eightbit.distributed.store import ShardStore, work_dir_for
from eightbit.distributed.worker import ShardResult
from eightbit.models.common import ModelLoadError
from eightbit.models.marian import (
    Translation,
    aligned_to_lines,
    tokenized_batches,
    translation_text,
)
from eightbit.progress import progress as progress_bar

log = logging.getLogger(__name__)

ShardCallback = Callable[[ShardResult], None]
DEFAULT_SETTINGS = ShardSettings()
DEFAULT_OPTIONS = RayOptions()  # a local Ray instance, one worker per CPU


@dataclass(frozen=True)
class RunStats:
    """How a sharded run went."""

    sentences: int
    shards: int
    resumed_shards: int  # found finished in the work directory
    workers: int
    retried_shards: int
    replaced_workers: int
    seconds: float

    @property
    def sentences_per_second(self) -> float:
        return self.sentences / self.seconds if self.seconds > 0 else 0.0


def _load_tokenizer_and_positions(model_dir: Path) -> tuple[Any, int]:
    """The model's tokenizer and its ``max_position_embeddings`` (from config.json alone)."""
    from transformers import MarianConfig, MarianTokenizer

    try:
        tokenizer = MarianTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        config = MarianConfig.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{model_dir}: cannot load the tokenizer or config ({err})") from None
    return tokenizer, config.max_position_embeddings


def _plan(model_dir: Path, sentences: Sequence[str], settings: ShardSettings) -> list[list[int]]:
    tokenizer, max_positions = _load_tokenizer_and_positions(model_dir)
    _, batches = tokenized_batches(
        tokenizer, sentences, max_positions, settings.batch_tokens, settings.max_sentences
    )
    return plan_shards(batches, settings.shard_sentences)


def _run(
    model_dir: Path,
    sentences: Sequence[str],
    work_dir: Path,
    settings: ShardSettings,
    options: RayOptions,
    progress: bool,
    on_shard: ShardCallback | None,
) -> tuple[ShardStore, RunStats]:
    preflight(options)
    start = time.perf_counter()
    key = run_key(model_dir, sentences, settings)
    store = ShardStore(work_dir, key, _plan(model_dir, sentences, settings) if sentences else [])
    done = store.finished()
    if done:
        log.info(
            "%s: resuming, %d of %d shards already done", work_dir, len(done), len(store.shards)
        )
    todo = {
        i: [sentences[j] for j in shard] for i, shard in enumerate(store.shards) if i not in done
    }
    pool = PoolStats()
    if todo:
        with (
            ray_session(options) as ray,
            # closed at once on any error, so the actors free their CPUs for the next run
            closing(run_on_actors(ray, str(model_dir), settings, todo, options, pool)) as results,
        ):
            for result in progress_bar(results, "translating on Ray", "shard", progress, len(todo)):
                store.write(result.index, result.translations)
                if on_shard is not None:
                    on_shard(result)
    stats = RunStats(
        sentences=len(sentences),
        shards=len(store.shards),
        resumed_shards=len(done),
        workers=pool.workers,
        retried_shards=pool.retried_shards,
        replaced_workers=pool.replaced_workers,
        seconds=time.perf_counter() - start,
    )
    return store, stats


def translate_on_ray(
    model_dir: str | os.PathLike[str],
    sentences: Sequence[str],
    *,
    settings: ShardSettings = DEFAULT_SETTINGS,
    options: RayOptions = DEFAULT_OPTIONS,
    work_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    on_shard: ShardCallback | None = None,
) -> tuple[list[Translation], RunStats]:
    """Translate ``sentences`` on Ray; the same output as :func:`~eightbit.models.marian.translate`.

    Finished shards go to ``work_dir`` (a rerun with the same model, input and settings resumes
    from them; removed after success); without one, a temporary directory (no resume).
    ``on_shard`` is called after each shard is stored.
    """
    with tempfile.TemporaryDirectory(prefix="eightbit-shards-") as tmp:
        directory = Path(work_dir) if work_dir is not None else Path(tmp) / "shards"
        store, stats = _run(
            Path(model_dir), sentences, directory, settings, options, progress, on_shard
        )
        translations = store.assemble()
        store.remove()
    return translations, stats


def translate_file_on_ray(
    model_dir: str | os.PathLike[str],
    lines: Sequence[str],
    output: str | os.PathLike[str],
    *,
    settings: ShardSettings = DEFAULT_SETTINGS,
    options: RayOptions = DEFAULT_OPTIONS,
    progress: bool = True,
    on_shard: ShardCallback | None = None,
) -> RunStats:
    """Translate the non-empty ``lines`` on Ray into ``output`` (line for line, written
    atomically); shards are kept in ``OUTPUT.shards/`` until the output is complete."""
    sentences = [line for line in lines if line]
    store, stats = _run(
        Path(model_dir), sentences, work_dir_for(output), settings, options, progress, on_shard
    )
    write_text_atomic(output, translation_text(aligned_to_lines(lines, store.assemble())))
    store.remove()
    return stats
