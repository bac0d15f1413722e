"""The native row argmax (greedy search's token choice) equals ``torch.argmax`` exactly."""

import pytest
import torch

from eightbit.kernels import native

pytestmark = pytest.mark.skipif(not native.is_available(), reason="native kernel unavailable")


@pytest.mark.parametrize("shape", [(64, 8000), (3, 7), (5, 8), (1, 1), (4, 17)])
def test_random_rows(shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    assert torch.equal(native.argmax_rows(x), x.argmax(-1))


def test_ties_infinities_nans_and_signed_zeros():
    x = torch.randn(6, 203, generator=torch.Generator().manual_seed(0))
    x[0, 10] = x[0, 150] = 50.0  # a tie: the first wins
    x[1] = float("-inf")  # suppressed everywhere: index 0
    x[2, 123] = x[2, 40] = float("nan")  # NaN is the largest: the first NaN wins
    x[3, 202] = float("nan")  # in the scalar tail
    x[4] = 0.0
    x[4, 3] = -0.0
    x[5, 198:] = 99.0  # the maximum only in the tail
    assert native.argmax_rows(x).tolist() == x.argmax(-1).tolist() == [10, 0, 40, 202, 0, 198]


def test_non_contiguous_input_is_refused():
    with pytest.raises(ValueError, match="contiguous"):
        native.argmax_rows(torch.zeros(8, 4).t())
