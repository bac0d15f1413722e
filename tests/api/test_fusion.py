"""Jacob et al.'s rewrites: BatchNorm folding, fused ReLU/ReLU6, integer chains (a small MLP, and
the feed-forward blocks of a tiny Marian)."""

import json

import pytest
import torch
from torch import nn

import eightbit
from eightbit import QuantConfig
from eightbit.core import quantize
from eightbit.engine.fuse import IntegerFeedForward
from eightbit.fusion import (
    chain_feed_forward,
    fold_batchnorm,
    fuse_activations,
    is_chained,
    run_integer,
)
from eightbit.kernels import native
from eightbit.mixed.units import Unit, swapped
from eightbit.nn import QuantLinear
from tests.engine.conftest import static_int8
from tests.helpers import sqnr_db, tiny_marian


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


@pytest.fixture(scope="module", params=["reference", "avx2"])
def chained_marian(request):
    """A tiny ReLU Marian, static INT8 (its feed-forward blocks chained by convert)."""
    if request.param == "avx2" and not native.is_available():
        pytest.skip("native kernel unavailable")
    return static_int8(tiny_marian("relu"), backend=request.param)


def _blocks(model):
    return [m for m in model.modules() if isinstance(getattr(m, "fc1", None), QuantLinear)]


def test_convert_chains_relu_feed_forward_blocks(chained_marian):
    blocks = _blocks(chained_marian)
    assert len(blocks) == 2  # one encoder and one decoder layer
    for block in blocks:
        fc1, fc2 = block.fc1, block.fc2
        assert fc1.activation == "relu" and is_chained(fc1, fc2)
        assert fc1.output_qparams.zero_point == fc2.input_qparams.zero_point


def test_chained_block_module_path_equals_integer_path(chained_marian):
    """The model's own modules (fc1 dequantizes, ReLU, fc2 quantizes again) and the engine's
    uint8 hand-over give bit-identical outputs; fc1's uint8 is within one level of quantizing
    its float-epilogue output after ReLU (the path before chaining)."""
    x = torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(1)) * 2
    with torch.no_grad():
        for block in _blocks(chained_marian):
            fc1, fc2 = block.fc1, block.fc2
            module_path = fc2(block.activation_fn(fc1(x)))
            assert torch.equal(IntegerFeedForward(fc1, fc2)(x), module_path)
            hidden = fc1.forward_quantized(fc1.quantize_input(x))
            float_epilogue = fc1.kernel().linear_fp32(x.reshape(-1, 32), fc1.input_qparams)
            before = quantize(torch.relu(float_epilogue), fc2.input_qparams)
            assert int((hidden.reshape(-1, 64).int() - before.int()).abs().max()) <= 1


def test_blocks_not_chained_without_relu_or_static_ranges():
    gelu = static_int8(tiny_marian("gelu"))
    dynamic = eightbit.quantize(tiny_marian("relu"), None, QuantConfig(method="dynamic"))
    for model in (gelu, dynamic):
        assert not any(block.fc1.has_output_qparams for block in _blocks(model))
    assert chain_feed_forward(gelu) == 0


def test_chain_follows_module_swaps_and_survives_save_load(chained_marian, tmp_path):
    """fc2 back in FP32 (mixed precision) unchains its fc1; the saved model keeps the chain."""
    fp32 = tiny_marian("relu")
    block = _blocks(chained_marian)[0]
    name = next(n for n, m in chained_marian.named_modules() if m is block.fc2)
    with swapped(chained_marian, [Unit(name, (name,), "linear")], fp32):
        assert not block.fc1.has_output_qparams and block.fc1.activation == "none"
    assert is_chained(block.fc1, block.fc2)
    eightbit.save(chained_marian, tmp_path / "int8")
    loaded = eightbit.load(tmp_path / "int8")
    ids = torch.tensor([[5, 9, 3, 0]])
    with torch.no_grad():
        expected = chained_marian(input_ids=ids, decoder_input_ids=ids).logits
        assert all(is_chained(b.fc1, b.fc2) for b in _blocks(loaded))
        assert torch.equal(loaded(input_ids=ids, decoder_input_ids=ids).logits, expected)


def test_models_saved_unchained_are_chained_at_load(chained_marian, tmp_path):
    """A model saved before the chain existed (fc1 with its fp32 epilogue) loads chained, with
    the outputs of the model as convert chains it now."""
    ids = torch.tensor([[5, 9, 3, 0], [7, 2, 0, 63]])
    with torch.no_grad():
        expected = chained_marian(input_ids=ids, decoder_input_ids=ids).logits
    chain_feed_forward(chained_marian, enabled=False)  # the format before the chain
    try:
        eightbit.save(chained_marian, tmp_path / "old")
    finally:
        chain_feed_forward(chained_marian)
    meta = json.loads((tmp_path / "old" / "eightbit.json").read_text())
    assert not any(r.get("has_output_qparams") for r in meta["modules"].values())
    loaded = eightbit.load(tmp_path / "old")
    assert len(_blocks(loaded)) == 2 and all(is_chained(b.fc1, b.fc2) for b in _blocks(loaded))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids, decoder_input_ids=ids).logits, expected)
