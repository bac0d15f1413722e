import pytest
import torch

from eightbit.nn import observation_mask
from eightbit.nn.mask import current_mask


def test_mask_is_chosen_by_shape_and_cleared_after_the_block():
    src, tgt = torch.ones(2, 5), torch.ones(2, 3)
    with observation_mask(src, tgt):
        assert current_mask(torch.zeros(2, 5, 8)).shape == (2, 5)
        assert current_mask(torch.zeros(2, 3, 8)).shape == (2, 3)
        assert current_mask(torch.zeros(2, 1, 8)) is None
    assert current_mask(torch.zeros(2, 5, 8)) is None


def test_ambiguous_masks_are_refused():
    with (
        pytest.raises(ValueError, match="distinct shapes"),
        observation_mask(torch.ones(2, 4), torch.zeros(2, 4)),
    ):
        pass
