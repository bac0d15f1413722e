"""Parallel workers: results in input order, threads shared out and restored; forked processes
or threads, "auto" forking only for enough items per worker (threads where the process cannot
fork); a forked pool kept across maps, seeing memory as it was when it forked."""

import os
import threading

import pytest
import torch

from eightbit.data import parallel
from eightbit.data.parallel import (
    AUTO_PROCESS_ITEMS,
    WORKER_KINDS,
    ForkedPool,
    WorkerDiedError,
    can_fork,
    default_workers,
    map_in_workers,
    uses_processes,
)
from eightbit.errors import EightbitError

needs_fork = pytest.mark.skipif(not can_fork(), reason="this process cannot fork")


def fail_on_three(x):
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x


@pytest.mark.parametrize("kind", WORKER_KINDS)
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_results_come_back_in_input_order(workers, kind):
    items = list(range(23))
    got = list(map_in_workers(lambda x: x * x, items, workers, kind=kind))
    assert got == [x * x for x in items]


@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_each_worker_gets_its_share_of_the_threads(kind):
    before = torch.get_num_threads()
    seen = list(
        map_in_workers(lambda _: torch.get_num_threads(), range(4), 2, total_threads=2, kind=kind)
    )
    assert seen == [1, 1, 1, 1]
    assert torch.get_num_threads() == before


@needs_fork
def test_process_workers_are_other_processes_and_tensors_round_trip():
    items = [torch.arange(6).view(2, 3) + i for i in range(5)]
    results = list(map_in_workers(lambda t: (os.getpid(), t * 2), items, 2, kind="process"))
    assert {pid for pid, _ in results} - {os.getpid()} == {pid for pid, _ in results}
    for item, (_, doubled) in zip(items, results, strict=True):
        assert torch.equal(doubled, item * 2)


@needs_fork
def test_thread_workers_stay_in_this_process():
    pids = set(map_in_workers(lambda _: os.getpid(), range(6), 2, kind="thread"))
    assert pids == {os.getpid()}


def test_process_kind_falls_back_to_threads_where_forking_is_impossible(monkeypatch):
    monkeypatch.setattr(parallel, "can_fork", lambda: False)
    seen = list(
        map_in_workers(lambda _: (os.getpid(), threading.get_ident()), range(6), 2, kind="process")
    )
    assert {pid for pid, _ in seen} == {os.getpid()}
    assert threading.get_ident() not in {ident for _, ident in seen}


@needs_fork
def test_an_error_in_a_process_worker_is_raised_here():
    with pytest.raises(ValueError, match="bad item 3"):
        list(map_in_workers(fail_on_three, range(6), 2, kind="process"))
    assert not parallel._forked_fns  # the table entry is gone with the pool


@needs_fork
def test_auto_forks_only_for_enough_items_per_worker():
    few = range(AUTO_PROCESS_ITEMS * 2 - 1)
    assert set(map_in_workers(lambda _: os.getpid(), few, 2)) == {os.getpid()}
    many = range(AUTO_PROCESS_ITEMS * 2)
    assert os.getpid() not in set(map_in_workers(lambda _: os.getpid(), many, 2))


def test_unknown_worker_kind_is_a_user_error():
    with pytest.raises(EightbitError, match="worker kind"):
        list(map_in_workers(str, [1, 2], 2, kind="fiber"))


def test_default_is_one_single_threaded_worker_per_thread():
    seen = list(map_in_workers(lambda _: torch.get_num_threads(), range(4), total_threads=2))
    assert seen == [1, 1, 1, 1]
    assert default_workers(8, total_threads=2) == 2
    assert default_workers(1, total_threads=4) == 1  # never more workers than items


def test_zero_workers_is_a_user_error():
    with pytest.raises(EightbitError, match="workers"):
        list(map_in_workers(str, [1], 0))


@needs_fork
def test_a_forked_pool_keeps_its_workers_from_one_map_to_the_next():
    with ForkedPool(lambda _: os.getpid(), 2) as pool:
        maps = [set(pool.map(range(8))) for _ in range(3)]
    seen = set().union(*maps)
    assert os.getpid() not in seen
    # which worker takes which item is a race, so no map need see both workers; but new forks
    # for every map would show at least one new process per map: 3 or more pids
    assert len(seen) <= 2


@needs_fork
def test_a_forked_pool_sees_memory_as_it_was_at_its_first_map():
    state = {"weights": 1}
    with ForkedPool(lambda _: state["weights"], 2) as pool:
        assert list(pool.map(range(4))) == [1] * 4
        state["weights"] = 2  # changed here, after the workers forked
        assert list(pool.map(range(4))) == [1] * 4
    with ForkedPool(lambda _: state["weights"], 2) as fresh:
        assert list(fresh.map(range(4))) == [2] * 4


@needs_fork
def test_a_forked_pool_survives_an_error_and_cannot_be_used_once_closed():
    pool = ForkedPool(fail_on_three, 2)
    with pytest.raises(ValueError, match="bad item 3"):
        list(pool.map(range(6)))
    assert list(pool.map([4, 5])) == [4, 5]
    pool.close()
    assert not parallel._forked_fns  # fn is released with the pool
    with pytest.raises(EightbitError, match="closed"):
        list(pool.map([1]))
    pool.close()  # closing twice is harmless


def test_a_forked_pool_where_forking_is_impossible_is_an_error(monkeypatch):
    monkeypatch.setattr(parallel, "can_fork", lambda: False)
    with pytest.raises(EightbitError, match="cannot fork"):
        ForkedPool(str, 2)


def test_when_workers_are_processes(monkeypatch):
    many = AUTO_PROCESS_ITEMS * 2
    if can_fork():
        assert uses_processes("process", 1, 2)
        assert uses_processes("auto", many, 2)
    assert not uses_processes("auto", many - 1, 2)
    assert not uses_processes("thread", many, 2)
    assert not uses_processes("process", many, 1)  # one worker runs in the calling thread
    monkeypatch.setattr(parallel, "can_fork", lambda: False)
    assert not uses_processes("process", many, 2)


@needs_fork
def test_a_dead_worker_closes_the_pool_with_a_clear_error():
    def die_on_two(x):
        if x == 2:
            os._exit(1)
        return x

    pool = ForkedPool(die_on_two, 2)
    with pytest.raises(WorkerDiedError, match="worker process died"):
        list(pool.map(range(4)))
    assert pool.closed
    assert not parallel._forked_fns
