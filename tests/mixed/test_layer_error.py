"""Output SQNR of alternative layers, measured on real inputs with padding excluded."""

import copy
import math

import torch
from torch import nn

from eightbit.mixed.layer_error import OutputErrorMeter, sqnr_db
from eightbit.nn import observation_mask
from tests.helpers import sqnr_db as reference_sqnr


def test_sqnr_db_edges():
    assert sqnr_db(100.0, 1.0) == 20.0
    assert sqnr_db(1.0, 0.0) == math.inf
    assert sqnr_db(0.0, 1.0) == -math.inf


def test_meter_matches_direct_sqnr_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4))
    noise = torch.randn(4) * 0.05
    same = copy.deepcopy(model[2])  # not the hooked module itself: that would recurse

    def noisy(x: torch.Tensor) -> torch.Tensor:
        return same(x) + noise

    x = torch.randn(3, 5, 8)
    expected = model(x)
    with OutputErrorMeter(model, {"2": {"noisy": noisy, "same": same}}) as meter:
        out = model(x)
    assert torch.equal(out, expected)
    assert not model[2]._forward_hooks, "hooks removed on exit"
    with torch.no_grad():
        hidden = torch.relu(model[0](x))
    scores = meter.sqnr()["2"]
    assert scores["same"] == math.inf
    assert math.isclose(
        scores["noisy"], reference_sqnr(model[2](hidden), noisy(hidden)), rel_tol=1e-4
    )


def test_padded_positions_do_not_count():
    layer = nn.Linear(4, 4)
    twin = copy.deepcopy(layer)
    x = torch.randn(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])

    def broken_on_padding(inp: torch.Tensor) -> torch.Tensor:
        out = twin(inp)
        out[~mask.bool()] += 1e6
        return out

    with OutputErrorMeter(layer, {"": {"alt": broken_on_padding}}) as meter, observation_mask(mask):
        layer(x)
    assert meter.sqnr()[""]["alt"] == math.inf
