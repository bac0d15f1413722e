"""Fast backends against the integer-only reference, on random shapes."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eightbit.core import dequantize, qparams_from_range, quantize
from eightbit.kernels import (
    KernelError,
    QuantizedWeight,
    embedding_gather,
    gelu,
    native,
    prepare_linear,
)
from eightbit.kernels.reference import zero_point_corrected


def random_layer(n: int, k: int, seed: int, bias: bool = True) -> QuantizedWeight:
    g = torch.Generator().manual_seed(seed)
    w = torch.randint(-127, 128, (n, k), generator=g, dtype=torch.int8)
    scale = torch.rand(n, generator=g) * 0.01 + 1e-3
    b = torch.randn(n, generator=g) if bias else None
    return QuantizedWeight(w, scale, b)


shapes = st.tuples(st.integers(0, 9), st.integers(1, 70), st.integers(1, 40))


@given(shape=shapes, seed=st.integers(0, 2**16))
def test_reference_fp32_equals_fake_quant_float(shape, seed):
    m, k, n = shape
    layer = random_layer(n, k, seed)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(seed)) * 2
    qp = qparams_from_range(-3.0, 3.5)
    got = prepare_linear(layer, "reference").linear_fp32(x, qp)
    w_float = layer.weight.float() * layer.scale.unsqueeze(1)
    fake = dequantize(quantize(x, qp), qp).double() @ w_float.double().T + layer.bias.double()
    torch.testing.assert_close(got.double(), fake, rtol=1e-5, atol=1e-4)


def test_zero_point_expansion_equals_direct_sum():
    x_q = torch.randint(0, 256, (5, 33), dtype=torch.uint8)
    w_q = torch.randint(-127, 128, (7, 33), dtype=torch.int8)
    zp = torch.tensor(117, dtype=torch.int32)
    direct = (x_q.long() - 117) @ w_q.long().T
    assert torch.equal(zero_point_corrected(x_q, zp, w_q).long(), direct)


@given(shape=shapes, seed=st.integers(0, 2**16))
def test_reference_requant_within_one_lsb_of_float(shape, seed):
    m, k, n = shape
    layer = random_layer(n, k, seed)
    x_q = torch.randint(
        0, 256, (m, k), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8
    )
    in_qp = qparams_from_range(-2.0, 2.0)
    out_qp = qparams_from_range(-4.0, 5.0)
    got = prepare_linear(layer, "reference").linear_requant(x_q, in_qp, out_qp)
    real = prepare_linear(layer, "reference").linear_fp32(dequantize(x_q, in_qp), in_qp)
    exact = torch.clamp(torch.round(real / out_qp.scale) + out_qp.zero_point, 0, 255)
    assert bool(((got.int() - exact.int()).abs() <= 1).all())


def test_fbgemm_fp32_matches_reference_with_7bit_activations():
    layer = random_layer(48, 96, 1)
    x = torch.randn(17, 96)
    qp = qparams_from_range(-2.5, 3.0, reduce_range=True)
    ref = prepare_linear(layer, "reference").linear_fp32(x, qp)
    fast = prepare_linear(layer, "fbgemm").linear_fp32(x, qp)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-4)


def test_fbgemm_requant_within_one_lsb_of_reference():
    layer = random_layer(32, 64, 2)
    in_qp = qparams_from_range(-2.0, 2.0, reduce_range=True)
    out_qp = qparams_from_range(-3.0, 3.0)
    x_q = torch.randint(0, 128, (9, 64), dtype=torch.uint8)
    ref = prepare_linear(layer, "reference").linear_requant(x_q, in_qp, out_qp, "relu")
    fast = prepare_linear(layer, "fbgemm").linear_requant(x_q, in_qp, out_qp, "relu")
    assert int((ref.int() - fast.int()).abs().max()) <= 1


def test_fbgemm_refuses_full_8bit_activations():
    """vpmaddubsw saturates on AVX2: 8-bit activations would give wrong sums, so refuse them."""
    with pytest.raises(KernelError, match="reduce_range"):
        prepare_linear(random_layer(4, 8, 0), "fbgemm").linear_fp32(
            torch.randn(2, 8), qparams_from_range(-1.0, 1.0)
        )


def test_unknown_backend_and_bad_weights():
    with pytest.raises(KernelError, match="unknown kernel backend"):
        prepare_linear(random_layer(2, 2, 0), "tpu")
    with pytest.raises(KernelError, match="int8"):
        QuantizedWeight(torch.zeros(2, 2), torch.ones(2))
    with pytest.raises(KernelError, match=r"\[-127, 127\]"):
        QuantizedWeight(torch.full((2, 2), -128, dtype=torch.int8), torch.ones(2))


def test_embedding_gather_dequantizes_rows():
    w = torch.randint(-127, 128, (10, 4), dtype=torch.int8)
    s = torch.rand(10)
    ids = torch.tensor([[1, 9], [0, 1]])
    got = embedding_gather(w, s, ids)
    assert got.shape == (2, 2, 4)
    torch.testing.assert_close(got[0, 1], w[9].float() * s[9])


avx2_only = pytest.mark.skipif(not native.is_available(), reason="no AVX2 on this CPU")


# the isa fixture (AVX2 or VNNI microkernels) is a setting that holds for every example
isa_settings = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@avx2_only
@isa_settings
@given(shape=shapes, seed=st.integers(0, 2**16), per_tensor=st.booleans(), left=st.booleans())
def test_avx2_is_bit_exact_with_the_reference(isa, shape, seed, per_tensor, left):
    """``left``: a narrow output range, so some multipliers are >= 1 (left shifts, saturation);
    else all are < 1 and the requantization takes the kernel's path without left shifts."""
    m, k, n = shape
    layer = random_layer(n, k, seed)
    if per_tensor:
        layer = QuantizedWeight(layer.weight, layer.scale[:1].expand(n).contiguous(), layer.bias)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g) * 3
    in_qp = qparams_from_range(-2.5, 3.5)
    out_qp = qparams_from_range(-0.01, 0.01) if left else qparams_from_range(-6.0, 4.0)
    ref, fast = prepare_linear(layer, "reference"), prepare_linear(layer, "avx2")
    assert torch.equal(fast.linear_fp32(x, in_qp), ref.linear_fp32(x, in_qp))
    x_q = quantize(x, in_qp)
    assert torch.equal(fast.quantize_input(x, in_qp), x_q)
    uint8_in = fast.linear_quantized_fp32(x_q, in_qp)
    assert torch.equal(uint8_in, ref.linear_quantized_fp32(x_q, in_qp))
    for activation in ("none", "relu"):
        assert torch.equal(
            fast.linear_requant(x_q, in_qp, out_qp, activation),
            ref.linear_requant(x_q, in_qp, out_qp, activation),
        )
        assert torch.equal(
            fast.linear_requant_from_fp32(x, in_qp, out_qp, activation),
            ref.linear_requant(x_q, in_qp, out_qp, activation),
        )
    for per_token in (False, True):
        assert torch.equal(fast.linear_dynamic(x, per_token), ref.linear_dynamic(x, per_token))


@avx2_only
@isa_settings
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_avx2_seven_bit_path_is_bit_exact_with_the_reference(isa, shape, seed):
    """reduce_range activation qparams (qmax = 127) take the 7-bit vpmaddubsw path."""
    m, k, n = shape
    layer = random_layer(n, k, seed)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(seed)) * 3
    in_qp = qparams_from_range(-2.5, 3.5, reduce_range=True)
    assert in_qp.qmax <= 127
    out_qp = qparams_from_range(-6.0, 4.0)
    ref, fast = prepare_linear(layer, "reference"), prepare_linear(layer, "avx2")
    assert torch.equal(fast.linear_fp32(x, in_qp), ref.linear_fp32(x, in_qp))
    x_q = quantize(x, in_qp)
    assert torch.equal(fast.quantize_input(x, in_qp), x_q)
    uint8_in = fast.linear_quantized_fp32(x_q, in_qp)
    assert torch.equal(uint8_in, ref.linear_quantized_fp32(x_q, in_qp))
    for activation in ("none", "relu"):
        assert torch.equal(
            fast.linear_requant(x_q, in_qp, out_qp, activation),
            ref.linear_requant(x_q, in_qp, out_qp, activation),
        )


QRANGES = {
    "affine": qparams_from_range(-2.5, 3.5),
    "post-relu": qparams_from_range(0.0, 4.0),  # zero point 0: what fc2 of a ReLU block sees
    "symmetric": qparams_from_range(-2.5, 3.5, symmetric=True, narrow=True),  # [1, 255]
    "seven-bit": qparams_from_range(-2.5, 3.5, reduce_range=True),
}


def _backends_for(qp) -> list[str]:
    names = ["reference"] + (["avx2"] if native.is_available() else [])
    return names + (["fbgemm"] if qp.qmax - qp.qmin <= 127 else [])


@isa_settings
@given(shape=shapes, seed=st.integers(0, 2**16), qrange=st.sampled_from(sorted(QRANGES)))
def test_linear_quantized_fp32_is_linear_fp32_on_quantized_input(isa, shape, seed, qrange):
    """uint8 in, fp32 out: bit-identical to the reference's, and to the same backend's fp32-in
    method on any input that quantizes to it, on every backend (both kernel sets); fp32 in,
    uint8 out: the quantize + requantize composition."""
    m, k, n = shape
    layer = random_layer(n, k, seed)
    qp = QRANGES[qrange]
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(seed)) * 3
    x_q = quantize(x, qp)
    reference = prepare_linear(layer, "reference")
    expected = reference.linear_quantized_fp32(x_q, qp)
    out_qp = qparams_from_range(-6.0, 4.0)
    for backend in _backends_for(qp):
        kernel = prepare_linear(layer, backend)
        got = kernel.linear_quantized_fp32(x_q, qp)
        assert torch.equal(got, kernel.linear_fp32(x, qp)), backend
        assert torch.equal(kernel.quantize_input(x, qp), x_q), backend
        for activation in ("none", "relu"):  # fp32 in, uint8 out (fused on avx2)
            requant = kernel.linear_requant_from_fp32(x, qp, out_qp, activation)
            assert torch.equal(requant, kernel.linear_requant(x_q, qp, out_qp, activation))
            if backend != "fbgemm":
                assert torch.equal(requant, reference.linear_requant(x_q, qp, out_qp, activation))
        if backend == "fbgemm":  # float epilogue of its own (module docstring)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
        else:
            assert torch.equal(got, expected), backend


@avx2_only
def test_avx2_full_range_extremes_do_not_saturate(isa):
    """The case fbgemm gets wrong on AVX2: 255 * 127 summed over a long row."""
    k = 4096
    layer = QuantizedWeight(torch.full((8, k), 127, dtype=torch.int8), torch.ones(8))
    qp = qparams_from_range(0.0, 255.0)  # scale 1, zero point 0
    x = torch.full((3, k), 255.0)
    out = prepare_linear(layer, "avx2").linear_fp32(x, qp)
    assert torch.equal(out, torch.full((3, 8), 255.0 * 127 * k))


@avx2_only
def test_avx2_input_qparams_cache_follows_new_and_changed_qparams():
    """The fast backend caches the last activation qparams as Python numbers: a different
    qparams object, or the same one changed in place, must give the reference's results again."""
    layer = random_layer(24, 40, seed=5)
    x = torch.randn(6, 40, generator=torch.Generator().manual_seed(5)) * 3
    ref, fast = prepare_linear(layer, "reference"), prepare_linear(layer, "avx2")
    first, second = qparams_from_range(-2.5, 3.5), qparams_from_range(-1.0, 8.0)
    for qp in (first, second, first):
        assert torch.equal(fast.linear_fp32(x, qp), ref.linear_fp32(x, qp))
    before = fast.linear_fp32(x, first)
    first.scale.mul_(2.0)
    first.zero_point.add_(3)
    after = fast.linear_fp32(x, first)
    assert not torch.equal(after, before)
    assert torch.equal(after, ref.linear_fp32(x, first))


def _gelu_inputs() -> torch.Tensor:
    """Dense sweeps of the ranges GELU bends in, plus huge, tiny and special values."""
    g = torch.Generator().manual_seed(0)
    return torch.cat(
        [
            torch.linspace(-12.0, 12.0, 1 << 20),
            torch.randn(1 << 18, generator=g) * 3,
            torch.randn(1 << 12, generator=g) * 1e-20,
            torch.tensor([0.0, -0.0, 1e-45, -1e-45, 3e38, -3e38, 150.0, -150.0]),
            torch.tensor([float("inf"), float("-inf"), float("nan")]),
        ]
    )


@avx2_only
def test_native_gelu_is_the_reference_gelu_bit_for_bit():
    x = _gelu_inputs()
    got, expected = native.gelu_f32(x), gelu(x)
    assert torch.equal(got.isnan(), expected.isnan())
    assert torch.equal(got.nan_to_num(), expected.nan_to_num())
    for piece in (x[5:10], x[: 1 << 15]):  # less than one vector; many
        assert torch.equal(native.gelu_f32(piece), gelu(piece))


@isa_settings
@given(shape=shapes, seed=st.integers(0, 2**16), qrange=st.sampled_from(sorted(QRANGES)))
def test_linear_gelu_is_bit_exact_with_gelu_of_the_linear(isa, shape, seed, qrange):
    """Static (fp32 or quantized output) and dynamic: every backend equals the composition of
    the reference's linear, eightbit's GELU and the quantize of the next layer's input."""
    m, k, n = shape
    layer = random_layer(n, k, seed)
    qp = QRANGES[qrange]
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(seed)) * 3
    reference = prepare_linear(layer, "reference")
    static = gelu(reference.linear_fp32(x, qp))
    for backend in _backends_for(qp):
        if backend == "fbgemm":  # float epilogue of its own (module docstring)
            continue
        kernel = prepare_linear(layer, backend)
        assert torch.equal(kernel.linear_gelu(x, qp), static), backend
        for out_qp in (
            qparams_from_range(-0.2, 5.0),
            qparams_from_range(0.0, 6.0, reduce_range=True),
        ):
            got = kernel.linear_gelu(x, qp, out_qp)
            assert got.dtype == torch.uint8 and torch.equal(got, quantize(static, out_qp)), backend
        for per_token in (False, True):
            dynamic = gelu(reference.linear_dynamic(x, per_token))
            assert torch.equal(kernel.linear_gelu(x, None, per_token=per_token), dynamic), backend
