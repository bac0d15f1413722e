from hypothesis import given
from hypothesis import strategies as st

from eightbit.data.batching import pack_by_tokens, restore_order


@given(
    lengths=st.lists(st.integers(1, 60), max_size=80),
    budget=st.integers(1, 400),
    cap=st.one_of(st.none(), st.integers(1, 10)),
)
def test_packing_covers_everything_once_within_budget(lengths, budget, cap):
    batches = pack_by_tokens(lengths, budget, cap)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    for batch in batches:
        cost = len(batch) * max(lengths[i] for i in batch)
        assert cost <= budget or len(batch) == 1
        assert cap is None or len(batch) <= cap


def test_batches_are_length_sorted_and_order_is_restored():
    lengths = [3, 9, 1, 9, 4]
    batches = pack_by_tokens(lengths, 18)
    assert batches[0] == [1, 3]  # the two longest together
    outputs = [[f"out{i}" for i in b] for b in batches]
    assert restore_order(batches, outputs) == [f"out{i}" for i in range(5)]
