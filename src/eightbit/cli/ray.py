"""``--ray`` for ``translate`` and ``evaluate``, and ``eightbit bench ray``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from eightbit.cli.bench import _publish
from eightbit.cli.common import UsageError

if TYPE_CHECKING:  # the distributed package is imported only when --ray is used
    from eightbit.distributed import RayOptions, RunStats, ShardSettings
    from eightbit.models.marian import Translation

log = logging.getLogger(__name__)

LOCAL = "local"  # what a bare --ray means


def _add_ray_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL,
        default=None,
        metavar="ADDRESS",
        help="translate in shards on Ray: no ADDRESS starts a local instance; auto or "
        "ray://host:port joins a cluster (put --ray after the positional arguments)",
    )
    p.add_argument(
        "--threads-per-worker", type=int, default=1, help="torch threads per actor (default 1)"
    )
    p.add_argument(
        "--shard-sentences", type=int, default=256, help="sentences per shard (default 256)"
    )


def _ray_settings(args: argparse.Namespace) -> tuple[ShardSettings, RayOptions]:
    from eightbit.distributed import RayOptions, ShardSettings

    for name in ("workers", "threads_per_worker", "shard_sentences"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')}: expected a positive number, got {value}")
    settings = ShardSettings(
        beam=args.beam,
        batch_tokens=args.batch_tokens,
        max_sentences=args.max_sentences,
        shard_sentences=args.shard_sentences,
        engine=args.engine,
    )
    options = RayOptions(
        address=None if args.ray == LOCAL else args.ray,
        workers=args.workers,
        threads_per_worker=args.threads_per_worker,
    )
    return settings, options


def _log_stats(stats: RunStats) -> None:
    log.info(
        "%d sentences in %d shards (%d resumed) on %d workers: %.1f s, %.1f sentences/s; "
        "%d shards retried, %d workers replaced",
        stats.sentences,
        stats.shards,
        stats.resumed_shards,
        stats.workers,
        stats.seconds,
        stats.sentences_per_second,
        stats.retried_shards,
        stats.replaced_workers,
    )


def _translate_file_on_ray(args: argparse.Namespace, lines: list[str]) -> int:
    from eightbit.distributed import translate_file_on_ray

    if not args.output:
        raise UsageError("--ray needs --output FILE (finished shards are kept beside it)")
    if args.input != "-" and Path(args.output).resolve() == Path(args.input).resolve():
        raise UsageError(f"--output {args.output}: is the input; choose another file")
    settings, options = _ray_settings(args)
    stats = translate_file_on_ray(
        args.model, lines, args.output, settings=settings, options=options, progress=not args.quiet
    )
    _log_stats(stats)
    return 0


def _translate_on_ray(args: argparse.Namespace, sentences: list[str]) -> list[Translation]:
    from eightbit.distributed import translate_on_ray

    settings, options = _ray_settings(args)
    outputs, stats = translate_on_ray(
        args.model, sentences, settings=settings, options=options, progress=not args.quiet
    )
    _log_stats(stats)
    return outputs


def _bench_ray(args: argparse.Namespace) -> int:
    from eightbit.bench.ray import RayBenchConfig, run_ray_benchmark, to_markdown

    if any(w < 1 for w in args.workers) or args.threads < 1:
        raise UsageError("--workers and --threads: expected positive numbers")
    config = RayBenchConfig(
        model_dir=Path(args.model),
        test_size=args.test_size,
        workers=tuple(args.workers),
        threads=args.threads,
        shard_sentences=args.shard_sentences,
        progress=not args.quiet,
    )
    report = run_ray_benchmark(config)
    return _publish(args, report, to_markdown(report))
