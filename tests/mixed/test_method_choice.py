"""method="auto": every candidate range read off one histogram, the least output error wins."""

import json

import pytest
import torch
from torch import nn

import eightbit
from eightbit.config import QuantConfig
from eightbit.mixed.method_choice import CANDIDATE_METHODS, apply_method
from eightbit.nn import QuantLinear
from tests.helpers import TinyMLP


def _batches():
    torch.manual_seed(1)
    return [torch.randint(0, 50, (4, 7)) for _ in range(4)]


@pytest.mark.parametrize("method", ["minmax", "kl-independent", "kl-symmetric", "mse"])
def test_a_method_read_off_the_histogram_equals_calibrating_with_it(method):
    model, batches = TinyMLP().eval(), _batches()
    direct = eightbit.quantize(model, batches, QuantConfig(method=method), progress=False)
    prepared = eightbit.prepare(model, QuantConfig(method="auto"))
    eightbit.calibrate(prepared, batches, progress=False)
    apply_method(prepared, QuantConfig(method="auto"), method)
    via_histogram = eightbit.convert(prepared)
    for name in ("fc1", "fc2"):
        a, b = direct.get_submodule(name), via_histogram.get_submodule(name)
        assert isinstance(a, QuantLinear) and isinstance(b, QuantLinear)
        assert a.input_qparams.scale.item() == pytest.approx(b.input_qparams.scale.item())
        assert a.input_qparams.zero_point.item() == b.input_qparams.zero_point.item()


class _OutlierLayer(nn.Module):
    """One input channel 300x larger than the rest, with tiny outgoing weights (README demo)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(16, 8)
        with torch.no_grad():
            self.proj.weight[:, 0] /= 300.0

    def forward(self, x):
        return self.proj(x)


def _outlier_batches():
    torch.manual_seed(2)
    batches = []
    for _ in range(4):
        x = torch.relu(torch.randn(8, 16))
        x[:, 0] *= 300.0
        batches.append(x)
    return batches


def test_auto_clips_an_outlier_channel_that_the_weights_ignore(tmp_path):
    model, batches = _OutlierLayer().eval(), _outlier_batches()
    int8 = eightbit.quantize(model, batches, QuantConfig(method="auto"), progress=False)
    chosen = int8._eightbit_extra["calibration_methods"]["proj"]
    assert chosen["method"] in CANDIDATE_METHODS
    assert chosen["method"] not in ("minmax", "mse"), "the input-side error keeps the outlier"
    for method in ("minmax", "mse"):
        other = eightbit.quantize(model, batches, QuantConfig(method=method), progress=False)
        x = torch.cat(batches)
        ref = model(x)
        assert (int8(x) - ref).pow(2).mean() < (other(x) - ref).pow(2).mean()
    path = eightbit.save(int8, tmp_path / "auto")
    meta = json.loads((path / "eightbit.json").read_text())
    assert meta["quantization"]["method"] == "auto"
    assert meta["extra"]["calibration_methods"]["proj"]["method"] == chosen["method"]
    loaded = eightbit.load(path, model=_OutlierLayer())
    assert torch.equal(loaded(batches[0]), int8(batches[0]))
