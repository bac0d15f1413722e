"""Jacob et al.'s rewrites on a small MLP: BatchNorm folding, fused ReLU/ReLU6, integer chain."""

import torch
from torch import nn

import eightbit
from eightbit import QuantConfig
from eightbit.fusion import fold_batchnorm, fuse_activations, run_integer
from tests.helpers import sqnr_db


def _mlp() -> nn.Sequential:
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Linear(20, 40),
        nn.BatchNorm1d(40),
        nn.ReLU(),
        nn.Linear(40, 30),
        nn.ReLU6(),
        nn.Linear(30, 5),
    )
    model.train()
    for _ in range(20):  # give the BatchNorm real running statistics
        model(torch.randn(64, 20) * 3 + 1)
    return model.eval()


def test_fold_batchnorm_preserves_function():
    model = _mlp()
    x = torch.randn(16, 20)
    with torch.no_grad():
        before = model(x)
        assert fold_batchnorm(model) == 1
        assert isinstance(model[1], nn.Identity)
        torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


def test_fused_relu_integer_chain_matches_float_path():
    model = _mlp()
    fold_batchnorm(model)
    calib = [torch.randn(32, 20) for _ in range(4)]
    int8 = eightbit.quantize(model, calib, QuantConfig(method="minmax"))
    x = torch.randn(8, 20)
    with torch.no_grad():
        float_path = int8(x)
        assert fuse_activations(int8) == 2
        assert int8[0].activation == "relu" and int8[3].activation == "relu6"
        integer = run_integer(int8, x)
        # requantizing between layers adds at most one rounding per layer: close to the
        # float-epilogue path, and both close to FP32
        assert sqnr_db(float_path, integer) > 25
        assert sqnr_db(model(x), integer) > 20
        hidden = int8[0].forward_quantized(int8[0].quantize_input(x))
        assert int(hidden.min()) >= int(int8[0].output_zero_point)  # ReLU lives in the clamp
