"""Ray: connect to (or start) a cluster, and run shards on a pool of translator actors.

Ray is an optional extra and is imported here only, inside functions, so ``import eightbit``
never needs it. The scheduling loop is our own, on top of Ray's actors: a shard whose actor dies
goes back to the queue and runs on another actor (the dead one is replaced), up to
``max_attempts`` times, so the caller can store each result as it arrives.
"""

from __future__ import annotations

import logging
import socket
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from eightbit.distributed.plan import ShardSettings
from eightbit.distributed.worker import ShardResult, ShardTranslator
from eightbit.errors import EightbitError

log = logging.getLogger(__name__)

LOCAL = None  # address meaning "start a local Ray instance"


class RayNotInstalledError(EightbitError):
    """The optional ``ray`` extra is missing."""


class RayConnectionError(EightbitError):
    """The Ray cluster cannot be reached, or cannot host the workers asked for."""


class ShardFailedError(EightbitError):
    """A shard failed on every attempt."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run: ``address`` None starts a local instance; ``"auto"`` or
    ``"ray://host:port"`` (or ``"host:port"``) joins a running cluster."""

    address: str | None = LOCAL
    workers: int | None = None  # default: every CPU of the cluster, threads_per_worker each
    threads_per_worker: int = 1
    connect_timeout_s: float = 10.0
    max_attempts: int = 3  # per shard, counting the first

    def __post_init__(self) -> None:
        if (self.workers is not None and self.workers < 1) or self.threads_per_worker < 1:
            raise ValueError("workers and threads_per_worker must be positive")


@dataclass
class PoolStats:
    """What happened to the workers during a run."""

    workers: int = 0
    retried_shards: int = 0
    replaced_workers: int = 0
    failures: list[str] = field(default_factory=list)


def import_ray() -> ModuleType:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RayNotInstalledError(
            "--ray needs Ray, which is not installed; install with pip install 'eightbit[ray]'"
        ) from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``ray://host:port`` or ``host:port``; None for ``auto``."""
    if address == "auto":
        return None
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RayConnectionError(
            f"Ray address {address!r}: expected auto, host:port or ray://host:port"
        )
    return host, int(port)


def check_reachable(address: str, timeout_s: float) -> None:
    """Fail within ``timeout_s`` when nothing listens at ``address`` (Ray itself may wait long)."""
    target = _host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=timeout_s).close()
    except OSError as err:
        raise RayConnectionError(
            f"Ray address {address!r}: cannot connect within {timeout_s:g} s ({err}); "
            "expected a running cluster (ray start --head)"
        ) from None


def preflight(options: RayOptions) -> None:
    """Fail fast, before any heavy work, when Ray is missing or the address is unreachable."""
    import_ray()
    if options.address is not LOCAL:
        check_reachable(options.address, options.connect_timeout_s)


@contextmanager
def ray_session(options: RayOptions) -> Iterator[ModuleType]:
    """Ray connected per ``options``; a Ray already initialized in this process is reused,
    and only an instance started here is shut down on exit."""
    preflight(options)
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
        if options.address is LOCAL:
            cpus = None if options.workers is None else options.workers * options.threads_per_worker
            kwargs.update(num_cpus=cpus, include_dashboard=False)
        else:
            kwargs["address"] = options.address
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = options.address or "a local instance"
            raise RayConnectionError(f"Ray: cannot start or join {where} ({err})") from None
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def pool_size(ray: ModuleType, options: RayOptions, shards: int) -> int:
    """How many actors to start: as asked, else as many as the cluster's CPUs hold."""
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if cpus < options.threads_per_worker:  # an actor that never fits would wait forever
        raise RayConnectionError(
            f"threads per worker {options.threads_per_worker}: the Ray cluster has only "
            f"{cpus} CPUs; expected at most that many"
        )
    wanted = options.workers if options.workers is not None else cpus // options.threads_per_worker
    return max(1, min(wanted, shards))


def _short(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[-1] if lines else type(err).__name__)[:300]


def run_on_actors(
    ray: ModuleType,
    model_dir: str,
    settings: ShardSettings,
    shards: Mapping[int, list[str]],
    options: RayOptions,
    stats: PoolStats,
) -> Iterator[ShardResult]:
    """Translate ``shards`` (index -> sentences) on a pool of actors; yield each as it finishes.

    Each actor loads the model once. A failed shard is queued again (first in line) and an actor
    that died is replaced; after ``options.max_attempts`` failures of one shard,
    :class:`ShardFailedError`. Actors are killed when the generator ends or is closed.
    """
    actor = ray.remote(ShardTranslator).options(
        num_cpus=options.threads_per_worker, max_restarts=0, max_task_retries=0
    )

    def start() -> Any:
        return actor.remote(model_dir, options.threads_per_worker, settings)

    stats.workers = pool_size(ray, options, len(shards))
    workers = [start() for _ in range(stats.workers)]
    idle, pending = deque(range(len(workers))), deque(sorted(shards))
    running: dict[Any, tuple[int, int]] = {}  # object ref -> (worker slot, shard index)
    failures: Counter[int] = Counter()
    try:
        while pending or running:
            while idle and pending:
                slot, index = idle.popleft(), pending.popleft()
                running[workers[slot].translate.remote(index, shards[index])] = (slot, index)
            (ref,), _ = ray.wait(list(running), num_returns=1)
            slot, index = running.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as err:
                failures[index] += 1
                stats.failures.append(f"shard {index}: {_short(err)}")
                if failures[index] >= options.max_attempts:
                    raise ShardFailedError(
                        f"shard {index} failed {failures[index]} times; last: {_short(err)}"
                    ) from None
                log.warning("shard %d failed (%s); retrying it", index, _short(err))
                stats.retried_shards += 1
                pending.appendleft(index)
                if isinstance(err, ray.exceptions.RayActorError):
                    workers[slot] = start()
                    stats.replaced_workers += 1
                idle.append(slot)  # behind the other idle actors: the retry goes elsewhere
                continue
            idle.append(slot)
            yield result
    finally:
        for worker in workers:
            ray.kill(worker)
