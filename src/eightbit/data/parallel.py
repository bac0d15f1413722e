"""Run independent batches in parallel workers, each with its share of the intra-op threads.

Bhandare et al. 2019 (section 5) run several small batches side by side instead of one batch
on every core: a decoder step on a few sentences does not keep many threads busy. The model is
shared, not copied; results come back in input order.

By default there is one worker per intra-op thread, each with one thread: on 2 cores, 2 workers
with 1 thread each decoded the shipped Marian model (d_model 256) 1.3-1.6x faster than 1 worker
with 2 threads on a quiet machine, and 2-25x faster on a loaded one, greedy and beam 4 (README,
"Batching defaults"): one step's small ops cannot keep two threads busy, and each waits for both.

Workers are forked processes (``kind="process"``) or threads (``kind="thread"``); the default,
``kind="auto"``, forks when there are at least :data:`AUTO_PROCESS_ITEMS` items per worker (and
the process can fork), threads otherwise. A decoder step is dozens of small ops, each a Python
call that takes the GIL and gives it back, so two worker threads wait for each other: in one
measurement 2 worker threads used 1.73 of the 2 cores and 37% more CPU time than one worker for
the same sentences, while two separate processes each ran at 93-98% of their speed alone. Forked
workers share the model's memory (copy-on-write: only batches and results are pickled) and each
has its own interpreter: on the shipped INT8 model, 3-16% less wall time than threads greedy and
3-7% with beam 4 (1,000 sentences, 16 batches; same-process A/B runs, README "Decoding engine"),
but the forks cost 45-85 ms per call: with 2 workers threads were faster up to 5 batches, even
at 9, and processes ahead from 12. ``kind="thread"`` keeps ``fn`` in this process (its side
effects stay visible).
"""

from __future__ import annotations

import itertools
import multiprocessing
import pickle
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import torch

from eightbit.errors import EightbitError

T = TypeVar("T")
R = TypeVar("R")

WORKER_KINDS = ("auto", "process", "thread")


class WorkerDiedError(EightbitError):
    """A forked worker process ended while it had work (killed, out of memory, a crash)."""


AUTO_PROCESS_ITEMS = 5  # per worker: where kind="auto" starts forking (measured break-even ~4.5)

# fn of each running process map, by key: forked workers inherit this table, so fn (often a
# closure over a model) is never pickled
_forked_fns: dict[int, Callable[[Any], Any]] = {}
_keys = itertools.count()


@contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """Set PyTorch's intra-op thread count for the duration of the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_workers(items: int, total_threads: int | None = None) -> int:
    """One worker per intra-op thread (``total_threads``, default PyTorch's current count), at
    most one per item."""
    return max(1, min(items, total_threads or torch.get_num_threads()))


def can_fork() -> bool:
    """Whether this process can start forked workers."""
    return (
        "fork" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon
    )


def check_worker_kind(kind: str) -> None:
    """Raise :class:`EightbitError` unless ``kind`` is one of :data:`WORKER_KINDS`."""
    if kind not in WORKER_KINDS:
        raise EightbitError(f"worker kind must be one of {', '.join(WORKER_KINDS)}, got {kind!r}")


def check_workers(workers: int) -> None:
    """Raise :class:`EightbitError` unless ``workers`` is at least 1."""
    if workers < 1:
        raise EightbitError(f"workers must be at least 1, got {workers}")


def uses_processes(kind: str, items: int, workers: int) -> bool:
    """Whether ``items`` items on ``workers`` workers of ``kind`` run in forked processes:
    "process" where this process can fork, "auto" also only from :data:`AUTO_PROCESS_ITEMS`
    items per worker on; never with one worker."""
    if workers < 2 or kind == "thread" or not can_fork():
        return False
    return kind == "process" or items >= AUTO_PROCESS_ITEMS * workers


def map_in_workers(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int | None = None,
    total_threads: int | None = None,
    kind: str = "auto",
) -> Iterator[R]:
    """``fn(item)`` for every item, in order, on ``workers`` workers (default
    :func:`default_workers`) that share ``total_threads`` (default: PyTorch's current count)
    intra-op threads equally. ``kind``: "process" (forked workers, a :class:`ForkedPool` for
    this call; threads where this process cannot fork), "thread", or "auto" (the rule of
    :func:`uses_processes`). With one worker, ``fn`` runs here, in this thread. With processes,
    items and results are pickled, an exception raised by ``fn`` is raised here, and ``fn``'s
    side effects stay in the workers."""
    check_worker_kind(kind)
    total = total_threads or torch.get_num_threads()
    if workers is None:
        workers = default_workers(len(items), total)
    check_workers(workers)
    if workers == 1:
        with intra_op_threads(total):
            yield from map(fn, items)
        return
    threads = max(1, total // workers)
    if uses_processes(kind, len(items), workers):
        with ForkedPool(fn, workers, threads) as pool:
            yield from pool.map(items)
        return
    with intra_op_threads(threads), ThreadPoolExecutor(workers) as pool:
        yield from pool.map(fn, items)


def _forked_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _forked_call(task: tuple[int, bytes]) -> bytes:
    key, item = task
    return pickle.dumps(_forked_fns[key](pickle.loads(item)), pickle.HIGHEST_PROTOCOL)


class ForkedPool(Generic[T, R]):
    """Forked worker processes that run ``fn`` over items, kept from one :meth:`map` to the
    next until :meth:`close`: the forks (45-85 ms on 2 cores) are paid once.

    The workers fork at the first :meth:`map` and hold this process's memory as it was then:
    later changes to what ``fn`` reads (a model's weights) stay unseen by them. Items and
    results are pickled; an exception raised by ``fn`` is raised in the caller. Each worker
    runs with ``threads`` intra-op threads. A worker that dies closes the pool and raises
    :class:`WorkerDiedError` in the caller. Where this process cannot fork
    (:func:`can_fork`), construction raises :class:`EightbitError`.
    """

    def __init__(self, fn: Callable[[T], R], workers: int, threads: int = 1) -> None:
        if not can_fork():
            raise EightbitError("this process cannot fork worker processes")
        check_workers(workers)
        self.workers = workers
        self._key = next(_keys)
        _forked_fns[self._key] = fn  # before the pool forks (at the first submit)
        self._pool: ProcessPoolExecutor | None = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_forked_init,
            initargs=(threads,),
        )

    def map(self, items: Sequence[T]) -> Iterator[R]:
        """``fn(item)`` for every item, in order, on the workers."""
        if self._pool is None:
            raise EightbitError("the worker pool is closed")
        # items and results go as plain pickles: the default (multiprocessing's pickler, to
        # which torch adds its reductions) moves each tensor to a shared-memory file, about
        # 2 ms a tensor
        tasks = [(self._key, pickle.dumps(item, pickle.HIGHEST_PROTOCOL)) for item in items]
        try:
            for result in self._pool.map(_forked_call, tasks):
                yield pickle.loads(result)
        except BrokenProcessPool as err:  # a worker died (killed, out of memory, a crash)
            self.close()
            raise WorkerDiedError(f"a worker process died ({err}); the pool is closed") from None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran (or a worker died, which closes the pool)."""
        return self._pool is None

    def close(self) -> None:
        """Stop the workers (pending items are cancelled); the pool cannot be used again."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            _forked_fns.pop(self._key, None)

    def __enter__(self) -> ForkedPool[T, R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
