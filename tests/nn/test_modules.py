"""Module-level numerics: QAT fake quant equals the converted INT8 layer; SQNR vs FP32."""

import pytest
import torch
from torch import nn

from eightbit.calibration import ObserverConfig, make_observer
from eightbit.core import qparams_from_range
from eightbit.nn import FakeQuantEmbedding, FakeQuantLinear, QuantEmbedding, QuantLinear
from eightbit.nn.weights import weight_qparams
from tests.helpers import sqnr_db


def _trained_fake_quant(per_channel: bool, symmetric: bool) -> tuple[FakeQuantLinear, torch.Tensor]:
    torch.manual_seed(0)
    linear = nn.Linear(48, 24)
    fq = FakeQuantLinear(
        linear,
        make_observer(ObserverConfig(method="ema", ema_decay=0.9)),
        per_channel=per_channel,
        fake_quant=True,
        symmetric=symmetric,
    )
    fq.train()
    for _ in range(5):
        fq(torch.randn(8, 48) * 2)
    fq.eval()
    fq.observe = False
    return fq, torch.randn(6, 10, 48) * 2


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("symmetric", [False, True])
def test_qat_fake_quant_output_equals_converted_int8(per_channel, symmetric):
    fq, x = _trained_fake_quant(per_channel, symmetric)
    int8 = QuantLinear.from_float(fq, fq.weight_qparams(), input_qp=fq.input_qparams())
    with torch.no_grad():
        torch.testing.assert_close(int8(x), fq(x), rtol=1e-5, atol=1e-5)


def test_fake_quant_embedding_equals_int8_embedding():
    emb = nn.Embedding(30, 16, padding_idx=0)
    ids = torch.randint(0, 30, (4, 7))
    fq = FakeQuantEmbedding(emb)
    q = QuantEmbedding.from_float(fq, fq.weight_qparams())
    with torch.no_grad():
        torch.testing.assert_close(q(ids), fq(ids), rtol=0, atol=1e-6)
        assert sqnr_db(emb(ids), q(ids)) > 35


def test_static_and_dynamic_int8_linear_sqnr_vs_fp32():
    torch.manual_seed(1)
    linear = nn.Linear(256, 128)
    x = torch.randn(32, 256)
    w_qp = weight_qparams(linear.weight, per_channel=True)
    static = QuantLinear.from_float(linear, w_qp, input_qp=qparams_from_range(x.min(), x.max()))
    dynamic = QuantLinear.from_float(linear, w_qp, input_qp=None, per_token=True)
    with torch.no_grad():
        ref = linear(x)
        assert sqnr_db(ref, static(x)) > 30
        assert sqnr_db(ref, dynamic(x)) > 30


def test_int8_output_chain_needs_no_dequantize():
    torch.manual_seed(2)
    a, b = nn.Linear(16, 32), nn.Linear(32, 8)
    x = torch.randn(5, 16)
    mid = a(x).detach()
    in_qp = qparams_from_range(x.min(), x.max())
    mid_qp = qparams_from_range(mid.min(), mid.max())
    qa = QuantLinear.from_float(a, weight_qparams(a.weight, True), input_qp=in_qp, output_qp=mid_qp)
    qb = QuantLinear.from_float(b, weight_qparams(b.weight, True), input_qp=mid_qp)
    with torch.no_grad():
        mid_q = qa.forward_quantized(qa.quantize_input(x))  # uint8 straight into the next layer
        assert mid_q.dtype == torch.uint8
        chained = qb.kernel().linear_fp32(
            qb.input_qparams.scale * (mid_q.float() - int(mid_qp.zero_point)), mid_qp
        )
        assert sqnr_db(b(a(x)), chained) > 25


def test_delayed_activation_quantization():
    linear = nn.Linear(8, 4)
    fq = FakeQuantLinear(
        linear,
        make_observer(ObserverConfig(method="ema")),
        per_channel=False,
        fake_quant=True,
        act_quant_delay=3,
    )
    fq.train()
    assert not fq.activation_quant_active()
    for _ in range(3):
        fq(torch.randn(2, 8))
    assert fq.activation_quant_active()


def test_qat_ranges_are_frozen_in_eval_mode():
    fq, x = _trained_fake_quant(per_channel=False, symmetric=True)
    fq.observe = True  # even with observing on, eval mode must not update the EMA
    before = fq.input_qparams()
    with torch.no_grad():
        fq(x * 100)
    after = fq.input_qparams()
    assert torch.equal(before.scale, after.scale)
    fq.train()
    fq(x * 100)
    assert float(fq.input_qparams().scale) > float(before.scale)


@pytest.mark.parametrize("backend", ["reference", "avx2"])
@pytest.mark.parametrize("mode", ["static", "dynamic-per-tensor", "dynamic-per-token"])
@pytest.mark.parametrize("rows", [1, 7, 40])
@pytest.mark.parametrize("twins_win", [False, True])
def test_forward_argmax_equals_argmax_of_forward(backend, mode, rows, twins_win):
    """Greedy decoding's fused output layer: the indices of forward + suppression + argmax on
    every kernel path (GEMV, VNNI/AMX tiles, fallbacks); columns 300 and 700 are equal, and
    with ``twins_win`` the largest of every row: the first one must win."""
    from eightbit.kernels import native

    if backend == "avx2" and not native.is_available():
        pytest.skip("native kernel unavailable")
    torch.manual_seed(rows)
    linear = nn.Linear(96, 1000)
    with torch.no_grad():
        linear.weight[700] = linear.weight[300]
        linear.bias[[300, 700]] = 40.0 if twins_win else float(linear.bias[300])
    x = torch.randn(rows, 96)
    input_qp = qparams_from_range(x.min(), x.max()) if mode == "static" else None
    layer = QuantLinear.from_float(
        linear,
        weight_qparams(linear.weight, per_channel=True),
        input_qp=input_qp,
        per_token=mode == "dynamic-per-token",
        backend=backend,
    )
    skip = torch.zeros(1000, dtype=torch.bool)
    skip[[0, 17, 999]] = True
    with torch.no_grad():
        logits = layer(x)
        assert torch.equal(layer.forward_argmax(x), logits.argmax(-1))
        expected = logits.masked_fill(skip, float("-inf")).argmax(-1)
        assert torch.equal(layer.forward_argmax(x, skip), expected)
        if twins_win:
            assert bool((expected == 300).all())
        after = torch.randn(1000)  # a logits bias, added after the layer's own
        got = layer.forward_argmax(x, skip, after)
        assert torch.equal(got, (logits + after).masked_fill(skip, float("-inf")).argmax(-1))
        skip[300] = True  # now the twin
        expected = logits.masked_fill(skip, float("-inf")).argmax(-1)
        assert torch.equal(layer.forward_argmax(x, skip), expected)
