"""Decoding options shared by ``translate``, ``evaluate`` and ``demo``: engine and batching."""

from __future__ import annotations

import argparse
from typing import Any

from eightbit.cli.common import positive_int
from eightbit.data.parallel import AUTO_PROCESS_ITEMS, WORKER_KINDS
from eightbit.models.marian import BATCH_TOKENS, BEAM_BATCH_TOKENS, ENGINES, MAX_SENTENCES


def add_decoding_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--engine",
        default="eightbit",
        choices=ENGINES,
        help="decoder: eightbit (our incremental engine) or hf (Hugging Face generate); "
        "default eightbit",
    )
    p.add_argument(
        "--batch-tokens",
        type=positive_int,
        default=None,
        help="token budget per batch (sentences x longest length; default "
        f"{BATCH_TOKENS} greedy, {BEAM_BATCH_TOKENS} with beam search)",
    )
    p.add_argument(
        "--max-sentences",
        type=positive_int,
        default=MAX_SENTENCES,
        help=f"sentences per batch at most (default {MAX_SENTENCES})",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="parallel decoding workers sharing the cores (default one per core, one "
        "thread each), or with --ray "
        "Ray actors (default: the cluster's CPUs / --threads-per-worker)",
    )
    p.add_argument(
        "--worker-kind",
        default="auto",
        choices=WORKER_KINDS,
        help="process: forked workers, each with its own interpreter (threads where the OS "
        "cannot fork); thread: threads of this process, which share one GIL; auto (default): "
        f"processes from {AUTO_PROCESS_ITEMS} batches per worker on, where they pay for the forks",
    )


def decoding_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``translate()`` keyword arguments the options above stand for."""
    return {
        "engine": args.engine,
        "batch_tokens": args.batch_tokens,
        "max_sentences": args.max_sentences,
        "workers": args.workers,
        "worker_kind": args.worker_kind,
    }
