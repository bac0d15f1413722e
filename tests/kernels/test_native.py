"""Native AVX2 INT8 kernel against plain torch int64 / float32 references, bit for bit."""

from __future__ import annotations

import itertools
import threading

import pytest
import torch

from eightbit.core.fixedpoint import (
    FixedPointMultiplier,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    requantize,
)
from eightbit.core.ops import quantize
from eightbit.core.qparams import QParams, qparams_from_range
from eightbit.kernels import native

pytestmark = [
    pytest.mark.skipif(not native.is_available(), reason="native kernel unavailable"),
    pytest.mark.usefixtures("isa"),  # every test on the AVX2 and (where present) VNNI, AMX kernels
]


def rand_u8(m: int, k: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 256, (m, k), generator=g, dtype=torch.uint8)


def rand_w(n: int, k: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(-127, 128, (n, k), generator=g, dtype=torch.int8)


def ref_acc(a: torch.Tensor, w: torch.Tensor, za: int | torch.Tensor = 0) -> torch.Tensor:
    """Exact int64 ``sum_k (a - za) * w``; ``za`` scalar or per-row (M,)."""
    za_col = za.long().unsqueeze(1) if isinstance(za, torch.Tensor) else za
    return (a.long() - za_col) @ w.long().T


# ---------------------------------------------------------------------------- int32 GEMM

GRID = list(itertools.product((0, 1, 3, 8, 33), (1, 7, 64, 100, 513), (1, 5, 16, 17, 300)))


@pytest.mark.parametrize(("m", "k", "n"), GRID)
def test_gemm_int32_exact(m, k, n):
    g = torch.Generator().manual_seed(m * 10007 + k * 101 + n)
    a, w = rand_u8(m, k, g), rand_w(n, k, g)
    packed = native.pack_weight(w)
    assert torch.equal(packed.colsum, w.long().sum(1).int())
    got = native.gemm_u8s8_int32(a, packed)
    assert got.dtype == torch.int32 and got.shape == (m, n)
    assert torch.equal(got.long(), ref_acc(a, w))
    assert torch.equal(native.gemm_u8s8_int32(a, packed, za=131).long(), ref_acc(a, w, 131))


@pytest.mark.parametrize(("m", "k", "n"), [(150, 1100, 600), (7, 2048, 530), (200, 64, 40)])
def test_gemm_int32_exact_blocked(m, k, n):
    """Several M, N and K blocks, both thread splits."""
    g = torch.Generator().manual_seed(k)
    a, w = rand_u8(m, k, g), rand_w(n, k, g)
    got = native.gemm_u8s8_int32(a, native.pack_weight(w), za=77)
    assert torch.equal(got.long(), ref_acc(a, w, 77))


@pytest.mark.parametrize("k", [37, 1030, 4100])  # several K blocks (partial sums) on AVX2, VNNI
def test_every_tile_shape_exact(k):
    """Every microkernel tile: 1-6 rows x 1-4 panels (the VNNI kernels take up to 64 columns)."""
    g = torch.Generator().manual_seed(k)
    for m in range(2, 14):
        for n in (16, 40, 64, 100, 130):
            a, w = rand_u8(m, k, g), rand_w(n, k, g)
            got = native.gemm_u8s8_int32(a, native.pack_weight(w), za=93)
            assert torch.equal(got.long(), ref_acc(a, w, 93)), (m, n)


@pytest.mark.parametrize("k", [64, 100, 257, 1030])  # whole 16-quad tile steps, and K tails
def test_every_amx_tile_shape_exact(k):
    """The AMX kernel's tiles (16 or 32 rows x 16 or 32 columns), row and column tails, 64-row
    blocks, K tails finished by the VNNI kernel; on the other kernel sets, the same shapes."""
    g = torch.Generator().manual_seed(k)
    for m in (8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 130):
        for n in (16, 17, 40, 64, 100):
            a, w = rand_u8(m, k, g), rand_w(n, k, g)
            got = native.gemm_u8s8_int32(a, native.pack_weight(w), za=93)
            assert torch.equal(got.long(), ref_acc(a, w, 93)), (m, n)


@pytest.mark.parametrize(
    ("a_val", "za", "w_val"),
    [(255, 0, 127), (255, 0, -127), (0, 255, -128), (255, 0, -128), (0, 255, 127)],
)
def test_no_saturation_at_extremes(a_val, za, w_val):
    """255 * 127 * 2 overflows int16 pairs (vpmaddubsw would saturate); we must stay exact."""
    m, k, n = 9, 4096, 20
    a = torch.full((m, k), a_val, dtype=torch.uint8)
    w = torch.full((n, k), w_val, dtype=torch.int8)
    got = native.gemm_u8s8_int32(a, native.pack_weight(w), za=za)
    assert torch.equal(got.long(), torch.full((m, n), (a_val - za) * w_val * k))


def test_thread_count_does_not_change_results():
    g = torch.Generator().manual_seed(3)
    a, w = rand_u8(100, 777, g), rand_w(333, 777, g)
    packed = native.pack_weight(w)
    scale, bias = torch.rand(333, generator=g), torch.randn(333, generator=g)
    before = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outs.append(
                (
                    native.gemm_u8s8_int32(a, packed, 5),
                    native.linear_fp32_out(a, 5, packed, scale, bias),
                )
            )
    finally:
        torch.set_num_threads(before)
    for i32, f32 in outs[1:]:
        assert torch.equal(i32, outs[0][0]) and torch.equal(f32, outs[0][1])


def test_k_zero_gives_zero_accumulators():
    packed = native.pack_weight(torch.zeros(5, 0, dtype=torch.int8))
    a = torch.zeros(3, 0, dtype=torch.uint8)
    assert torch.equal(native.gemm_u8s8_int32(a, packed, 9), torch.zeros(3, 5, dtype=torch.int32))
    bias = torch.randn(5)
    assert torch.equal(native.linear_fp32_out(a, 9, packed, torch.ones(5), bias), bias.expand(3, 5))


def test_concurrent_callers_share_the_pool_safely():
    """Python threads calling at once (ctypes drops the GIL): the pool serves one call, the others
    run serially in their own thread; every result must be exact."""
    g = torch.Generator().manual_seed(8)
    cases = []
    for m, k, n in [(1, 512, 512), (40, 300, 700), (150, 64, 90), (8, 1030, 260)]:
        a, w = rand_u8(m, k, g), rand_w(n, k, g)
        cases.append((a, native.pack_weight(w), ref_acc(a, w, 3)))
    errors: list[str] = []

    def work(offset: int) -> None:
        for i in range(40):
            a, packed, want = cases[(i + offset) % len(cases)]
            if not torch.equal(native.gemm_u8s8_int32(a, packed, 3).long(), want):
                errors.append(f"case {(i + offset) % len(cases)}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# ---------------------------------------------------------------------------- fp32 epilogue


@pytest.mark.parametrize(("m", "k", "n"), [(0, 5, 3), (1, 512, 512), (33, 100, 17), (70, 513, 300)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_fp32_out_equals_float_epilogue(m, k, n, with_bias):
    """Bound: none. ``fl(fl(float(acc) * s) + b)`` is exactly what torch computes unfused."""
    g = torch.Generator().manual_seed(m + k + n)
    a, w = rand_u8(m, k, g), rand_w(n, k, g)
    scale = torch.rand(n, generator=g) * 1e-3
    bias = torch.randn(n, generator=g) if with_bias else None
    got = native.linear_fp32_out(a, 128, native.pack_weight(w), scale, bias)
    want = ref_acc(a, w, 128).float() * scale
    if bias is not None:
        want = want + bias
    assert torch.equal(got, want)


def test_linear_static_fp32_fuses_quantize():
    g = torch.Generator().manual_seed(11)
    x = torch.randn(37, 300, generator=g) * 3
    w = rand_w(50, 300, g)
    packed, ws, b = native.pack_weight(w), torch.rand(50, generator=g) * 0.01, torch.randn(50)
    scale, zp = 0.031, 120
    got = native.linear_static_fp32(x, scale, zp, packed, ws, b)
    x_q = native.quantize_u8(x, scale, zp)
    out_scale = torch.tensor(scale, dtype=torch.float32) * ws
    assert torch.equal(got, native.linear_fp32_out(x_q, zp, packed, out_scale, b))
    # a 7-bit activation range (reduce_range): the clamp happens before the GEMM
    got7 = native.linear_static_fp32(x, scale, 60, packed, ws, b, qmin=0, qmax=127)
    x_q7 = native.quantize_u8(x, scale, 60, 0, 127)
    assert torch.equal(got7, native.linear_fp32_out(x_q7, 60, packed, out_scale, b))


@pytest.mark.parametrize("w_val", [127, -127])
def test_linear_static_fp32_exact_at_full_8bit_extremes(w_val):
    """255 * 127 * 2 overflows an int16 pair: the fused static linear must stay exact for full
    8-bit activations on whichever kernel runs (vpmaddwd pairs, or the VNNI quad kernel), also
    across K blocks."""
    m, k, n = 9, 1100, 20
    x = torch.full((m, k), 255.0)
    packed = native.pack_weight(torch.full((n, k), w_val, dtype=torch.int8))
    got = native.linear_static_fp32(x, 1.0, 0, packed, torch.ones(n))
    assert torch.equal(got, torch.full((m, n), float(255 * w_val * k)))


# ---------------------------------------------------------------------------- requantization


def requant_reference(acc, bias, m0, shift, zp, lo, hi, dtype):
    r = (acc.long() + bias.long()).int()
    scaled = multiply_by_quantized_multiplier(r, FixedPointMultiplier(m0, shift))
    return torch.clamp(scaled.long() + zp, lo, hi).to(dtype)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8])
@pytest.mark.parametrize(("m", "k", "n"), [(0, 3, 4), (1, 7, 1), (8, 64, 17), (33, 513, 300)])
def test_requant_matches_fixedpoint(m, k, n, dtype):
    g = torch.Generator().manual_seed(m * 7 + n)
    a, w = rand_u8(m, k, g), rand_w(n, k, g)
    bias = torch.randint(-(2**20), 2**20, (n,), generator=g, dtype=torch.int32)
    real = torch.rand(n, generator=g, dtype=torch.float64) * 10.0 ** torch.randint(
        -6, 1, (n,), generator=g
    )
    real[: n // 3] *= 300.0  # some M >= 1: left shifts, saturation
    fpm = quantize_multiplier(real)
    zp, lo, hi = (3, 0, 255) if dtype == torch.uint8 else (-5, -128, 127)
    requant = native.Requantization(bias, fpm.multiplier, fpm.shift, zp, lo, hi, dtype)
    got = native.linear_requant(a, 100, native.pack_weight(w), requant)
    want = requant_reference(ref_acc(a, w, 100), bias, fpm.multiplier, fpm.shift, zp, lo, hi, dtype)
    assert got.dtype == dtype and torch.equal(got, want)


@pytest.mark.parametrize("m", [1, 13])  # the M = 1 kernel and the tiled GEMM
@pytest.mark.parametrize(("lo_shift", "hi_shift"), [(0, 30), (-31, 30), (-31, 62)])
def test_requant_edge_multipliers(m, lo_shift, hi_shift):
    """Any multiplier in [0, 2^31), shifts in [lo_shift, hi_shift]: right shifts only (the
    vector path without left shifts), left shifts with saturation, and right shifts over 30
    (the scalar path); huge biases, so acc + bias wraps and reaches INT32_MIN/MAX."""
    g = torch.Generator().manual_seed(m * 100 + hi_shift - lo_shift)
    k, n = 40, 64
    a, w = rand_u8(m, k, g), rand_w(n, k, g)
    m0 = torch.randint(0, 2**31, (n,), generator=g, dtype=torch.int64).int()
    m0[:4] = torch.tensor([2**31 - 1, 0, 2**30, 1], dtype=torch.int32)
    shift = torch.randint(lo_shift, hi_shift + 1, (n,), generator=g, dtype=torch.int32)
    shift[:3] = torch.tensor([lo_shift, 0, hi_shift], dtype=torch.int32)
    bias = torch.randint(-(2**31), 2**31, (n,), generator=g, dtype=torch.int64).int()
    bias[4:6] = torch.tensor([-(2**31), 2**31 - 1], dtype=torch.int32)
    bias[n // 2 :] //= 2**16  # moderate biases: outputs inside the clamp too
    requant = native.Requantization(bias, m0, shift, 0, -128, 127, torch.int8)
    got = native.linear_requant(a, 0, native.pack_weight(w), requant)
    want = requant_reference(ref_acc(a, w), bias, m0, shift, 0, -128, 127, torch.int8)
    assert torch.equal(got, want)
    assert ((want > -128) & (want < 127)).sum() >= m  # not only saturated values


def test_requant_equals_core_requantize_with_relu():
    g = torch.Generator().manual_seed(5)
    a, w = rand_u8(20, 96, g), rand_w(48, 96, g)
    out_qp = qparams_from_range(-1.0, 2.0)
    fpm = quantize_multiplier(torch.full((48,), 0.0007, dtype=torch.float64))
    acc = ref_acc(a, w, 90).int()
    want = requantize(acc, fpm, out_qp, "relu")
    zp = int(out_qp.zero_point)
    requant = native.Requantization(None, fpm.multiplier, fpm.shift, zp, zp, 255, torch.uint8)
    got = native.linear_requant(a, 90, native.pack_weight(w), requant)
    assert torch.equal(got, want)


# ---------------------------------------------------------------------------- quantization


def test_quantize_u8_bit_exact_with_core():
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor(0.0173, dtype=torch.float32)
    x = torch.randn(7, 1001, generator=g) * 2
    x[0, :50] = (torch.arange(50) - 25.5) * scale  # near-ties around the half-way points
    x[1, :4] = torch.tensor([float("inf"), -float("inf"), 1e30, -1e30])
    for zp in (0, 97, 255):
        qp = QParams(scale, torch.tensor(zp, dtype=torch.int32), torch.uint8, 0, 255)
        assert torch.equal(native.quantize_u8(x, float(scale), zp), quantize(x, qp))
    qp7 = QParams(scale, torch.tensor(60, dtype=torch.int32), torch.uint8, 0, 127)
    assert torch.equal(native.quantize_u8(x, float(scale), 60, 0, 127), quantize(x, qp7))


def per_row_rows() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(9, 203, generator=g)
    x[1] = 0.0
    x[2] = 5.0  # constant positive row
    x[3] = -torch.rand(203, generator=g)  # all negative
    x[4] *= 1e-9  # range below float32 eps / 255: clamped scale
    x[5] *= 1e4
    x[6] = torch.rand(203, generator=g)  # zero point 0
    return x


def test_quantize_u8_per_row_matches_qparams_from_range():
    x = per_row_rows()
    q, scale, zp = native.quantize_u8_per_row(x)
    for r in range(x.shape[0]):
        qp = qparams_from_range(x[r].min(), x[r].max())
        assert scale[r].item() == qp.scale.item() and zp[r].item() == qp.zero_point.item()
        assert torch.equal(q[r], quantize(x[r], qp))


@pytest.mark.parametrize("per_row", [True, False])
@pytest.mark.parametrize(("m", "k", "n"), [(0, 4, 4), (1, 203, 30), (9, 203, 300)])
def test_linear_dynamic_matches_composition(per_row, m, k, n):
    x = per_row_rows()[:m, :k].contiguous() if k == 203 else torch.randn(m, k)
    g = torch.Generator().manual_seed(n)
    w = rand_w(n, k, g)
    ws, b = torch.rand(n, generator=g) * 0.01, torch.randn(n, generator=g)
    got = native.linear_dynamic(x, native.pack_weight(w), ws, b, per_row=per_row)
    if per_row:
        q, s, z = native.quantize_u8_per_row(x)
    else:
        qp = qparams_from_range(x.min() if m else 0.0, x.max() if m else 0.0)
        q = quantize(x, qp)
        s, z = qp.scale.expand(m), qp.zero_point.expand(m)
    want = ref_acc(q, w, z).float() * (s.unsqueeze(1) * ws) + b
    assert torch.equal(got, want)


@pytest.mark.parametrize(("m", "k", "n"), [(0, 8, 4), (1, 203, 30), (9, 203, 300), (40, 64, 70)])
def test_linear_plan_equals_one_shot_functions(m, k, n):
    """The per-layer plan gives the one-shot functions' results, for changed parameters too."""
    g = torch.Generator().manual_seed(m + n)
    x = torch.randn(m, k, generator=g) * 2
    w = rand_w(n, k, g)
    packed, ws, b = native.pack_weight(w), torch.rand(n, generator=g) * 0.01, torch.randn(n)
    plan = native.LinearPlan(packed, ws, b)
    for scale, zp, qmin, qmax in [(0.03, 120, 0, 255), (0.05, 60, 0, 127), (0.03, 100, 0, 255)]:
        want = native.linear_static_fp32(x, scale, zp, packed, ws, b, qmin, qmax)
        assert torch.equal(plan.static_fp32(x, scale, zp, qmin, qmax), want)
    for per_row, seven in itertools.product((True, False), repeat=2):
        want = native.linear_dynamic(x, packed, ws, b, per_row=per_row, seven_bit=seven)
        assert torch.equal(plan.dynamic(x, per_row=per_row, seven_bit=seven), want)
    no_bias = native.LinearPlan(packed, ws)
    want = native.linear_static_fp32(x, 0.03, 120, packed, ws)
    assert torch.equal(no_bias.static_fp32(x, 0.03, 120), want)


def test_linear_plan_follows_kernel_switch():
    """A plan built on one kernel set keeps giving the same results after use_vnni flips."""
    if not native.vnni_available():
        pytest.skip("this CPU lacks AVX512-VNNI")
    g = torch.Generator().manual_seed(3)
    x, w = torch.randn(20, 100, generator=g), rand_w(70, 100, g)
    packed, ws = native.pack_weight(w), torch.rand(70, generator=g) * 0.01
    plan = native.LinearPlan(packed, ws)
    first = plan.static_fp32(x, 0.02, 128)
    previous = native.use_vnni(not native.vnni_enabled())
    try:
        assert torch.equal(plan.static_fp32(x, 0.02, 128), first)
        assert torch.equal(plan.dynamic(x), native.linear_dynamic(x, packed, ws))
    finally:
        native.use_vnni(previous)


def test_linear_plan_rejects_bad_inputs():
    packed = native.pack_weight(torch.zeros(4, 6, dtype=torch.int8))
    with pytest.raises(ValueError, match=r"w_scale must have shape \(4,\)"):
        native.LinearPlan(packed, torch.ones(3))
    with pytest.raises(ValueError, match=r"bias must be a 1-d torch\.float32"):
        native.LinearPlan(packed, torch.ones(4), torch.ones(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="PackedWeight"):
        native.LinearPlan(torch.zeros(4, 6), torch.ones(4))  # type: ignore[arg-type]
    plan = native.LinearPlan(packed, torch.ones(4))
    x = torch.zeros(2, 6)
    with pytest.raises(ValueError, match="scale must be positive"):
        plan.static_fp32(x, 0.0, 0)
    with pytest.raises(ValueError, match="zero point"):
        plan.static_fp32(x, 1.0, 300)
    with pytest.raises(ValueError, match="qmin <= qmax"):
        plan.static_fp32(x, 1.0, 0, 10, 5)
    with pytest.raises(ValueError, match="K=6"):
        plan.static_fp32(torch.zeros(2, 5), 1.0, 0)
    with pytest.raises(ValueError, match="float32"):
        plan.dynamic(x.double())


# ---------------------------------------------------------------------------- errors, build


def test_wrapper_rejects_bad_inputs():
    packed = native.pack_weight(torch.zeros(4, 6, dtype=torch.int8))
    a = torch.zeros(2, 6, dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8"):
        native.gemm_u8s8_int32(a.float(), packed)
    with pytest.raises(ValueError, match="K=6"):
        native.gemm_u8s8_int32(torch.zeros(2, 5, dtype=torch.uint8), packed)
    with pytest.raises(ValueError, match="contiguous"):
        native.gemm_u8s8_int32(torch.zeros(6, 2, dtype=torch.uint8).T, packed)
    with pytest.raises(ValueError, match="zero point"):
        native.gemm_u8s8_int32(a, packed, za=256)
    with pytest.raises(ValueError, match=r"out_scale must have shape \(4,\)"):
        native.linear_fp32_out(a, 0, packed, torch.ones(3), None)
    ones = torch.ones(4, dtype=torch.int32)
    with pytest.raises(ValueError, match="shift"):
        native.Requantization(None, ones, ones * 63, 0, 0, 255)
    with pytest.raises(ValueError, match="m0"):  # the kernel relies on M0 >= 0
        native.Requantization(None, -ones, ones, 0, 0, 255)
    with pytest.raises(ValueError, match="out_dtype"):
        native.Requantization(None, ones, ones, 0, 0, 255, torch.int32)
    with pytest.raises(ValueError, match="N=4"):
        native.linear_requant(
            a, 0, packed, native.Requantization(None, ones[:3], ones[:3], 0, 0, 9)
        )
    with pytest.raises(ValueError, match="int8"):
        native.pack_weight(torch.zeros(4, 6, dtype=torch.uint8))


def test_build_failure_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("EIGHTBIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    target = native.library_path()
    assert target.parent == tmp_path
    with pytest.raises(native.NativeKernelUnavailable, match="failed"):
        native._build(target)
    assert not target.exists() and not list(tmp_path.glob("*.tmp"))


def test_unwritable_cache_dir_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("EIGHTBIT_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(native.NativeKernelUnavailable, match="EIGHTBIT_CACHE_DIR"):
        native._open()


def test_fresh_build_in_new_cache_dir(tmp_path, monkeypatch):
    """The library builds into EIGHTBIT_CACHE_DIR under a hashed name and loads."""
    monkeypatch.setenv("EIGHTBIT_CACHE_DIR", str(tmp_path))
    lib = native._open()
    assert native.library_path().exists() and native.library_path().parent == tmp_path
    assert lib.eb_gemm_u8_i32 is not None


@pytest.mark.parametrize(("k", "n"), [(1, 1), (7, 17), (64, 5), (513, 300), (2048, 64)])
def test_single_row_path_equals_tile_path(k, n):
    """M = 1 runs a separate GEMV (vpmaddubsw with the sign trick); it must agree bit for bit
    with the tiled path that the same row takes inside a larger M."""
    g = torch.Generator().manual_seed(k * 31 + n)
    a, w = rand_u8(1, k, g), rand_w(n, k, g)
    a[0, : min(k, 4)] = torch.tensor([0, 255, 128, 127][: min(k, 4)], dtype=torch.uint8)
    packed = native.pack_weight(w)
    two = torch.cat([a, a])  # the same row twice: the 2-row tile kernel
    for za in (0, 128, 255):
        assert torch.equal(native.gemm_u8s8_int32(a, packed, za)[0], ref_acc(a, w, za)[0].int())
        assert torch.equal(native.gemm_u8s8_int32(two, packed, za)[0], ref_acc(a, w, za)[0].int())
    scale, bias = torch.rand(n, generator=g), torch.randn(n, generator=g)
    assert torch.equal(
        native.linear_fp32_out(a, 77, packed, scale, bias)[0],
        native.linear_fp32_out(two, 77, packed, scale, bias)[0],
    )
    m0 = torch.randint(2**30, 2**31 - 1, (n,), generator=g, dtype=torch.int32)
    shift = torch.randint(-3, 40, (n,), generator=g, dtype=torch.int32)
    for dtype, zp, lo, hi in ((torch.uint8, 5, 0, 255), (torch.int8, -3, -128, 127)):
        requant = native.Requantization(None, m0, shift, zp, lo, hi, dtype)
        one = native.linear_requant(a, 9, packed, requant)
        both = native.linear_requant(two, 9, packed, requant)
        assert torch.equal(one[0], both[0])
    x = torch.randn(1, k, generator=g)
    x2 = torch.cat([x, x])
    assert torch.equal(
        native.linear_dynamic(x, packed, scale, bias)[0],
        native.linear_dynamic(x2, packed, scale, bias)[0],
    )
    assert torch.equal(
        native.linear_static_fp32(x, 0.01, 120, packed, scale, bias, 0, 200)[0],
        native.linear_static_fp32(x2, 0.01, 120, packed, scale, bias, 0, 200)[0],
    )


# ---------------------------------------------------------------------------- 7-bit path


def rand_u7(m: int, k: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 128, (m, k), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize(("m", "k", "n"), GRID)
def test_seven_bit_gemm_exact_and_equal_to_eight_bit_path(m, k, n):
    g = torch.Generator().manual_seed(m * 7919 + k * 31 + n)
    a, w = rand_u7(m, k, g), torch.randint(-128, 128, (n, k), generator=g, dtype=torch.int8)
    packed = native.pack_weight(w)
    w127 = w.clamp(min=-127)  # the 8-bit single-row path assumes weights >= -127
    packed127 = native.pack_weight(w127)
    for za in (0, 64, 127, 200):
        got = native.gemm_u8s8_int32(a, packed, za, seven_bit=True)
        assert got.shape == (m, n) and torch.equal(got.long(), ref_acc(a, w, za))
        got = native.gemm_u8s8_int32(a, packed127, za, seven_bit=True)
        assert torch.equal(got, native.gemm_u8s8_int32(a, packed127, za))
        assert torch.equal(got.long(), ref_acc(a, w127, za))


def test_seven_bit_quad_layout_is_packed_once_on_first_use(isa):
    g = torch.Generator().manual_seed(1)
    a, w = rand_u7(5, 30, g), rand_w(20, 30, g)
    packed = native.pack_weight(w)
    native.gemm_u8s8_int32(a, packed)
    if isa == "avx2":
        assert packed.quad is None  # the AVX2 8-bit path never allocates it
    else:
        assert packed.quad is not None  # VNNI and AMX read the quad layout for 8-bit too
    native.gemm_u8s8_int32(a, packed, seven_bit=True)
    quad = packed.quad
    assert quad is not None and quad.numel() == 2 * 8 * 64
    native.gemm_u8s8_int32(a, packed, seven_bit=True)
    assert packed.quad is quad


@pytest.mark.parametrize(("m", "k", "n"), [(150, 1100, 600), (7, 2048, 530), (200, 64, 40)])
def test_seven_bit_blocked_and_threaded(m, k, n):
    g = torch.Generator().manual_seed(k + 1)
    a, w = rand_u7(m, k, g), rand_w(n, k, g)
    packed = native.pack_weight(w)
    want = ref_acc(a, w, 41)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            got = native.gemm_u8s8_int32(a, packed, 41, seven_bit=True)
            assert torch.equal(got.long(), want)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("a_val", "za", "w_val"),
    [(127, 0, 127), (127, 0, -127), (127, 0, -128), (0, 127, -128), (127, 127, 127), (0, 255, 127)],
)
def test_seven_bit_no_saturation_at_extremes(a_val, za, w_val):
    """2 * 127 * 128 = 32512 fits an int16 pair: vpmaddubsw on 7-bit activations stays exact."""
    m, k, n = 9, 4096, 20
    a = torch.full((m, k), a_val, dtype=torch.uint8)
    w = torch.full((n, k), w_val, dtype=torch.int8)
    got = native.gemm_u8s8_int32(a, native.pack_weight(w), za=za, seven_bit=True)
    assert torch.equal(got.long(), torch.full((m, n), (a_val - za) * w_val * k))


@pytest.mark.parametrize(("m", "k", "n"), [(0, 5, 3), (1, 7, 1), (3, 100, 17), (33, 513, 300)])
def test_seven_bit_epilogues_equal_eight_bit_path(m, k, n):
    g = torch.Generator().manual_seed(m + k + n)
    a, w = rand_u7(m, k, g), rand_w(n, k, g)
    packed = native.pack_weight(w)
    out_scale, bias = torch.rand(n, generator=g) * 1e-3, torch.randn(n, generator=g)
    f8 = native.linear_fp32_out(a, 60, packed, out_scale, bias)
    assert torch.equal(native.linear_fp32_out(a, 60, packed, out_scale, bias, seven_bit=True), f8)
    bias_i = torch.randint(-(2**20), 2**20, (n,), generator=g, dtype=torch.int32)
    fpm = quantize_multiplier(torch.rand(n, generator=g, dtype=torch.float64) * 1e-3)
    for dtype, zp, lo, hi in ((torch.uint8, 3, 0, 255), (torch.int8, -5, -128, 127)):
        requant = native.Requantization(bias_i, fpm.multiplier, fpm.shift, zp, lo, hi, dtype)
        args = (a, 60, packed, requant)
        r8 = native.linear_requant(*args)
        assert torch.equal(native.linear_requant(*args, seven_bit=True), r8)
        want = requant_reference(
            ref_acc(a, w, 60), bias_i, fpm.multiplier, fpm.shift, zp, lo, hi, dtype
        )
        assert torch.equal(r8, want)
    # float input, qmax <= 127 selects the 7-bit path inside linear_static_fp32
    x = torch.randn(m, k, generator=g) * 3
    got = native.linear_static_fp32(x, 0.05, 60, packed, out_scale, bias, qmin=0, qmax=127)
    x_q = native.quantize_u8(x, 0.05, 60, 0, 127)
    s = torch.tensor(0.05, dtype=torch.float32) * out_scale
    assert torch.equal(got, native.linear_fp32_out(x_q, 60, packed, s, bias))


@pytest.mark.parametrize("per_row", [True, False])
@pytest.mark.parametrize(("m", "k", "n"), [(0, 4, 4), (1, 203, 30), (9, 203, 300), (40, 1100, 70)])
def test_linear_dynamic_seven_bit_matches_composition(per_row, m, k, n):
    """7-bit dynamic mode: qparams_from_range(..., reduce_range=True) per row (or tensor), exact
    GEMM, float epilogue."""
    g = torch.Generator().manual_seed(m * 31 + k + n)
    x = torch.randn(m, k, generator=g) * 2 + 0.3
    w = rand_w(n, k, g)
    packed, ws, b = native.pack_weight(w), torch.rand(n, generator=g) * 0.01, torch.randn(n)
    got = native.linear_dynamic(x, packed, ws, b, per_row=per_row, seven_bit=True)
    if m == 0:
        assert got.shape == (0, n)
        return
    rows = [x[i] for i in range(m)] if per_row else [x]
    qps = [qparams_from_range(r.min(), r.max(), reduce_range=True) for r in rows]
    if not per_row:
        qps = qps * m
    want = torch.empty(m, n)
    for i, qp in enumerate(qps):
        assert (qp.qmin, qp.qmax) == (0, 127)
        x_q = quantize(x[i : i + 1], qp)
        acc = ref_acc(x_q, w, int(qp.zero_point)).float()
        want[i] = acc[0] * (qp.scale.float() * ws) + b
    assert torch.equal(got, want)


@pytest.mark.parametrize(
    ("m", "k", "n"), [(1, 64, 100), (5, 37, 33), (40, 256, 1000), (70, 300, 517)]
)
def test_plan_argmax_equals_argmax_of_the_written_output(m, k, n, isa):
    """The fused argmax epilogue: torch.argmax of what static_fp32 / dynamic write, suppressed
    columns as -inf, a NaN logit (from a NaN bias) winning unless suppressed, ties to the first,
    on each kernel path (AVX2 epilogue, AVX-512 tile epilogue, AMX)."""
    g = torch.Generator().manual_seed(m + n)
    w = rand_w(n, k, g)
    w[n - 3] = w[n // 2]  # a tie, later in the row
    bias = torch.randn(n, generator=g)
    bias[n - 3] = bias[n // 2]
    plan = native.LinearPlan(native.pack_weight(w), torch.rand(n, generator=g) / 50, bias)
    x = torch.randn(m, k, generator=g)
    skip = torch.zeros(n, dtype=torch.bool)
    skip[:: max(1, n // 9)] = True
    for per_row in (True, False):
        logits = plan.dynamic(x, per_row=per_row)
        assert torch.equal(plan.dynamic_argmax(x, per_row=per_row), logits.argmax(-1))
        got = plan.dynamic_argmax(x, per_row=per_row, skip=skip)
        assert torch.equal(got, logits.masked_fill(skip, float("-inf")).argmax(-1))
    logits = plan.static_fp32(x, 0.02, 120)
    after = torch.randn(n, generator=g)  # a logits bias: a second rounding, as logits + bias
    assert torch.equal(
        plan.static_argmax(x, 0.02, 120, bias_after=after), (logits + after).argmax(-1)
    )
    got = plan.dynamic_argmax(x, skip=skip, bias_after=after)
    expected = (plan.dynamic(x) + after).masked_fill(skip, float("-inf")).argmax(-1)
    assert torch.equal(got, expected)
    assert torch.equal(
        plan.static_argmax(x, 0.02, 120, skip=skip),
        logits.masked_fill(skip, float("-inf")).argmax(-1),
    )
    bias[[n // 3, n - 2]] = float("nan")
    nan_plan = native.LinearPlan(plan.packed, torch.ones(n), bias)
    assert bool((nan_plan.static_argmax(x, 0.02, 120) == n // 3).all())
    skip[n // 3] = True
    assert bool((nan_plan.static_argmax(x, 0.02, 120, skip=skip) == n - 2).all())


@pytest.mark.parametrize("n", [16 * 8, 16 * 8 + 5, 1000, 16 * 64])
def test_plan_argmax_first_maximum_among_many_ties(n, isa):
    """Logits that are exactly the bias (zero weights): values from a small set, so maxima tie
    within a panel, across panels of the same and of different reduction lanes, and in the
    tail; rows with everything suppressed (-inf everywhere: the first column, as torch.argmax);
    a NaN in a late panel. The per-row reduction over panels is vectorized 8 panels at a time."""
    g = torch.Generator().manual_seed(n)
    k, m = 32, 6
    plan_for = lambda bias: native.LinearPlan(  # noqa: E731
        native.pack_weight(torch.zeros(n, k, dtype=torch.int8)), torch.ones(n), bias
    )
    x = torch.randn(m, k, generator=g)
    for trial in range(20):
        bias = torch.randint(-2, 3, (n,), generator=g).float()
        if trial % 5 == 0:
            bias[torch.randint(0, n, (3,), generator=g)] = 7.0  # a few far-apart maxima
        skip = torch.rand(n, generator=g) < 0.3
        plan = plan_for(bias)
        logits = bias.expand(m, n)
        assert torch.equal(plan.static_argmax(x, 0.05, 100), logits.argmax(-1))
        want = logits.masked_fill(skip, float("-inf")).argmax(-1)
        assert torch.equal(plan.static_argmax(x, 0.05, 100, skip=skip), want)
        assert torch.equal(plan.dynamic_argmax(x, skip=skip), want)
    everything = torch.ones(n, dtype=torch.bool)
    assert bool((plan.static_argmax(x, 0.05, 100, skip=everything) == 0).all())
    bias[n - 20] = float("nan")
    assert bool((plan_for(bias).static_argmax(x, 0.05, 100) == n - 20).all())


def test_plan_argmax_refuses_zero_columns():
    """No column, no maximum: a clear error instead of reading the empty per-panel buffer."""
    plan = native.LinearPlan(native.pack_weight(torch.zeros(0, 8, dtype=torch.int8)), torch.ones(0))
    with pytest.raises(ValueError, match="zero output columns"):
        plan.static_argmax(torch.zeros(3, 8), 0.1, 0)
