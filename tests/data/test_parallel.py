"""Parallel workers: results in input order, threads shared out and restored."""

import pytest
import torch

from eightbit.data.parallel import default_workers, map_in_workers
from eightbit.errors import EightbitError


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_results_come_back_in_input_order(workers):
    items = list(range(23))
    assert list(map_in_workers(lambda x: x * x, items, workers)) == [x * x for x in items]


def test_each_worker_gets_its_share_of_the_threads():
    before = torch.get_num_threads()
    seen = list(map_in_workers(lambda _: torch.get_num_threads(), range(4), 2, total_threads=2))
    assert seen == [1, 1, 1, 1]
    assert torch.get_num_threads() == before


def test_default_is_one_single_threaded_worker_per_thread():
    seen = list(map_in_workers(lambda _: torch.get_num_threads(), range(4), total_threads=2))
    assert seen == [1, 1, 1, 1]
    assert default_workers(8, total_threads=2) == 2
    assert default_workers(1, total_threads=4) == 1  # never more workers than items


def test_zero_workers_is_a_user_error():
    with pytest.raises(EightbitError, match="workers"):
        list(map_in_workers(str, [1], 0))
