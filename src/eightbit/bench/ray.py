"""Ray benchmark: sentences/s of the single-process path vs 1, 2, ... local Ray workers.

One machine, one INT8 model, the shipped test set. Every configuration gets the same cores:
the single process runs ``threads`` torch threads, ``w`` workers run ``threads // w`` each.
Ray times are end to end (actors start and load the model once each, shards are stored);
starting the local Ray instance itself is timed apart, as a cluster would already be running.
"""

from __future__ import annotations

import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from eightbit.config import DYNAMIC, QuantConfig
from eightbit.data.corpus import load_parallel_corpus
from eightbit.distributed import RayOptions, ShardSettings, translate_on_ray
from eightbit.distributed.ray_pool import ray_session
from eightbit.evaluate.report import markdown_table
from eightbit.io import METADATA_FILE
from eightbit.models.marian import (
    load_translation_model,
    save_translation_model,
    translate,
)
from eightbit.transform import quantize_dynamic


@dataclass(frozen=True)
class RayBenchConfig:
    """What to time; the defaults take a few minutes on two quiet cores."""

    model_dir: Path
    test_size: int | None = None
    workers: tuple[int, ...] = (1, 2)
    threads: int = 2
    shard_sentences: int = 64
    progress: bool = True


def _int8_dir(model_dir: Path, scratch: Path) -> tuple[Path, str]:
    """``model_dir`` when it is INT8 already, else its dynamic INT8 version saved in ``scratch``."""
    if (model_dir / METADATA_FILE).is_file():
        return model_dir, "as given"
    model, tokenizer = load_translation_model(model_dir)
    int8 = quantize_dynamic(model, QuantConfig(method=DYNAMIC))
    return save_translation_model(int8, tokenizer, scratch / "int8"), "dynamic (quantized here)"


def _row(name: str, workers: int, threads: int, sentences: int, seconds: float, same: bool) -> dict:
    return {
        "path": name,
        "workers": workers,
        "threads_per_worker": threads,
        "seconds": round(seconds, 2),
        "sentences_per_second": round(sentences / seconds, 2),
        "identical_to_single_process": same,
    }


def run_ray_benchmark(config: RayBenchConfig) -> dict[str, Any]:
    """Time the single-process path, then each worker count on one local Ray instance."""
    sources = [s for s, _ in load_parallel_corpus("test")][: config.test_size]
    with tempfile.TemporaryDirectory(prefix="eightbit-bench-ray-") as tmp:
        int8_dir, quantization = _int8_dir(config.model_dir, Path(tmp))
        model, tokenizer = load_translation_model(int8_dir)
        torch.set_num_threads(config.threads)
        start = time.perf_counter()
        reference = translate(model, tokenizer, sources, progress=config.progress)
        rows = [
            _row(
                "single process", 1, config.threads, len(sources), time.perf_counter() - start, True
            )
        ]
        del model
        settings = ShardSettings(shard_sentences=config.shard_sentences)
        start = time.perf_counter()
        cpus = max(config.threads, *config.workers)  # so that every pool fits at once
        with ray_session(RayOptions(workers=cpus, threads_per_worker=1)):
            ray_start = time.perf_counter() - start
            for workers in config.workers:
                threads = max(1, config.threads // workers)
                options = RayOptions(workers=workers, threads_per_worker=threads)
                outputs, stats = translate_on_ray(
                    int8_dir, sources, settings=settings, options=options, progress=config.progress
                )
                rows.append(
                    _row("Ray", workers, threads, len(sources), stats.seconds, outputs == reference)
                )
    return {
        "sentences": len(sources),
        "model": str(config.model_dir),
        "quantization": quantization,
        "threads": config.threads,
        "shard_sentences": config.shard_sentences,
        "ray_start_seconds": round(ray_start, 2),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "results": rows,
    }


def to_markdown(report: dict[str, Any]) -> str:
    base = report["results"][0]["sentences_per_second"]
    headers = ["path", "workers", "threads each", "seconds", "sentences/s", "vs single", "same"]
    rows = [
        [
            r["path"],
            r["workers"],
            r["threads_per_worker"],
            f"{r['seconds']:.1f}",
            f"{r['sentences_per_second']:.1f}",
            f"{r['sentences_per_second'] / base:.2f}x",
            "yes" if r["identical_to_single_process"] else "NO",
        ]
        for r in report["results"]
    ]
    title = (
        f"{report['sentences']} test sentences, greedy, INT8 ({report['quantization']}), "
        f"{report['threads']} cores in all, shards of {report['shard_sentences']} sentences; "
        f"local Ray start-up {report['ray_start_seconds']:.1f} s (not counted).\n\n"
    )
    return title + markdown_table(headers, rows)
