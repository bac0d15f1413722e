"""eightbit's float32 exp and GELU: close to torch's own, exact at the special values."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from eightbit.core.elementwise import erf, expf, gelu


def _ulps(got: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """Distance in float32 units in the last place (finite, same-sign values)."""
    return (got.view(torch.int32).long() - expected.view(torch.int32).long()).abs()


def test_exp_is_within_two_ulp_of_double_precision_over_the_normal_range():
    d = torch.cat([torch.linspace(-87.0, 88.0, 1 << 20), torch.linspace(-1.0, 1.0, 1 << 16)])
    exact = torch.exp(d.double()).float()
    assert int(_ulps(expf(d), exact).max()) <= 2


def test_exp_special_values():
    d = torch.tensor([0.0, -0.0, -104.5, -200.0, -math.inf, 88.8, 1000.0, math.inf, math.nan])
    e = expf(d)
    assert e[:2].tolist() == [1.0, 1.0]
    assert e[2:5].tolist() == [0.0, 0.0, 0.0]
    assert e[5:8].tolist() == [math.inf] * 3
    assert math.isnan(e[8])
    assert 0.0 < float(expf(torch.tensor(-103.0))) < 1e-44  # gradual underflow, not a flush


@given(st.floats(-12.0, 12.0, width=32))
def test_erf_is_odd_and_within_its_formula_error(a):
    x = torch.tensor([a, -a], dtype=torch.float32)
    y = erf(x)
    assert y[0] == -y[1]
    assert abs(float(y[0]) - math.erf(a)) <= 4e-7  # 1.5e-7 formula + float32 rounding


def test_gelu_is_as_close_to_the_exact_gelu_as_torchs_float32_gelu():
    x = torch.cat([torch.linspace(-12.0, 12.0, 1 << 20), torch.randn(1 << 16) * 3])
    exact = torch.nn.functional.gelu(x.double())
    ours = gelu(x).double()
    torch.testing.assert_close(ours, exact, rtol=1e-6, atol=5e-7)
    theirs = torch.nn.functional.gelu(x).double()  # float32, oneDNN's or torch's own kernel
    assert (ours - exact).abs().max() <= (theirs - exact).abs().max()
    assert torch.equal(gelu(torch.tensor([0.0, 40.0, -40.0])), torch.tensor([0.0, 40.0, -0.0]))
    special = gelu(torch.tensor([math.nan, math.inf, -math.inf]))
    assert math.isnan(special[0]) and special[1] == math.inf and math.isnan(special[2])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_gelu_computes_in_float32(dtype):
    x = torch.linspace(-3, 3, 64)
    assert torch.equal(gelu(x.to(dtype)), gelu(x.to(dtype).float()))
