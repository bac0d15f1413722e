"""The decode attention kernel: float64 reference, strides, masks, key-row indices, fixed bits."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eightbit.kernels import native
from eightbit.kernels.decode_attention import decode_attention

pytestmark = pytest.mark.skipif(not native.is_available(), reason="native kernel unavailable")


def reference(q, k, v, scale, mask=None, index=None):
    """float64 softmax(scale q.k + mask) v, row r reading key row index[r, j] for key j."""
    rows, _, _ = q.shape
    keys = k.shape[2] if index is None else index.shape[1]
    if index is None:
        index = torch.arange(rows)[:, None].expand(rows, keys)
    steps = torch.arange(keys)[None, :].expand(rows, keys)
    kk = k.double()[index.long(), :, steps]  # (rows, keys, heads, hd)
    vv = v.double()[index.long(), :, steps]
    scores = torch.einsum("rhd,rjhd->rhj", q.double(), kk) * scale
    if mask is not None:
        scores = scores + mask.double()[:, None, :]
    return torch.einsum("rhj,rjhd->rhd", scores.softmax(-1), vv)


def _strided(shape, generator):
    """A tensor of ``shape`` whose last dimension is contiguous but the others are not."""
    padded = (*shape[:-2], shape[-2] + 1, shape[-1])
    return torch.randn(*padded, generator=generator).narrow(-2, 0, shape[-2])


@st.composite
def problems(draw):
    rows = draw(st.integers(1, 6))
    heads = draw(st.integers(1, 4))
    head_dim = draw(st.integers(1, 72))
    keys = draw(st.integers(1, 40))
    kv_rows = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    q = _strided((rows, heads, head_dim), g)
    k = _strided((kv_rows, heads, keys + draw(st.integers(0, 3)), head_dim), g)
    v = _strided(tuple(k.shape), g)
    if draw(st.booleans()):  # time-major storage, as the engine's self-attention cache
        k = k.permute(2, 0, 1, 3).contiguous().permute(1, 2, 0, 3)
    index = torch.randint(0, kv_rows, (rows, keys), generator=g, dtype=torch.int32)
    if draw(st.booleans()):  # one key row per query row (cross-attention): zero key stride
        index = index[:, :1].expand(rows, keys)
    mask = None
    if draw(st.booleans()):
        mask = torch.zeros(rows, keys)
        masked = torch.rand(rows, keys, generator=g) < 0.4
        masked[:, draw(st.integers(0, keys - 1))] = False  # every row attends to a key
        mask.masked_fill_(masked, float("-inf"))
    scale = draw(st.sampled_from([head_dim**-0.5, 1.0, 0.1]))
    return q, k, v, scale, mask, index, keys


@settings(max_examples=80, deadline=None)
@given(problems())
def test_matches_float64_reference(problem):
    q, k, v, scale, mask, index, keys = problem
    got = decode_attention(q, k, v, scale, mask=mask, kv_index=index, keys=keys)
    expected = reference(q, k[:, :, :keys], v[:, :, :keys], scale, mask, index)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=2e-6)


@pytest.mark.skipif(not native.vnni_available(), reason="this CPU lacks AVX-512")
@settings(max_examples=40, deadline=None)
@given(problems())
def test_avx512_and_avx2_give_the_same_bits(problem):
    q, k, v, scale, mask, index, keys = problem
    results = []
    previous = native.use_vnni(True)
    try:
        for wide in (True, False):
            native.use_vnni(wide)
            results.append(decode_attention(q, k, v, scale, mask=mask, kv_index=index, keys=keys))
    finally:
        native.use_vnni(previous)
    assert torch.equal(results[0], results[1])


@pytest.mark.parametrize("head_dim", [32, 13])
def test_a_row_gives_the_same_bits_anywhere(head_dim):
    """Same query, keys, values and mask: same bits, whatever the batch around the row, its
    position, the layout of the operands and the thread count."""
    g = torch.Generator().manual_seed(0)
    heads, keys = 8, 37
    q = torch.randn(1, heads, head_dim, generator=g)
    k = torch.randn(1, heads, keys, head_dim, generator=g)
    v = torch.randn(1, heads, keys, head_dim, generator=g)
    mask = torch.zeros(1, keys)
    mask[0, ::5] = float("-inf")
    alone = decode_attention(q, k, v, 0.2, mask=mask)
    rows, at = 64, 41  # the row among 63 others: enough work for the thread pool
    big_q = torch.randn(rows, heads, head_dim, generator=g)
    big_q[at] = q[0]
    big_k = torch.randn(keys, 3, heads, head_dim, generator=g).permute(1, 2, 0, 3)
    big_v = torch.randn(keys, 3, heads, head_dim, generator=g).permute(1, 2, 0, 3)
    big_k[2], big_v[2] = k[0], v[0]
    index = torch.randint(0, 3, (rows, keys), generator=g, dtype=torch.int32)
    index[at] = 2
    big_mask = torch.zeros(rows, keys)
    big_mask[at] = mask[0]
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out = decode_attention(big_q, big_k, big_v, 0.2, mask=big_mask, kv_index=index)
            assert torch.equal(out[at], alone[0])
    finally:
        torch.set_num_threads(threads)


def test_masked_keys_do_not_change_a_bit():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(3, 2, 32, generator=g)
    k = torch.randn(3, 2, 20, 32, generator=g)
    v = torch.randn(3, 2, 20, 32, generator=g)
    mask = torch.zeros(3, 20)
    mask[:, 5:9] = float("-inf")
    before = decode_attention(q, k, v, 0.3, mask=mask)
    k[:, :, 5:9] = 1e3 * torch.randn(3, 2, 4, 32, generator=g)
    v[:, :, 5:9] = 1e3 * torch.randn(3, 2, 4, 32, generator=g)
    assert torch.equal(decode_attention(q, k, v, 0.3, mask=mask), before)
    kept = [*range(5), *range(9, 20)]  # attention over the other keys only
    torch.testing.assert_close(before, decode_attention(q, k[:, :, kept], v[:, :, kept], 0.3))


def test_writes_into_out_and_equals_sdpa_up_to_rounding():
    g = torch.Generator().manual_seed(2)
    q = torch.randn(5, 4, 1, 16, generator=g)
    k = torch.randn(5, 4, 9, 16, generator=g)
    v = torch.randn(5, 4, 9, 16, generator=g)
    out = torch.empty(5, 4, 16)
    got = decode_attention(q[:, :, 0], k, v, 0.25, out=out)
    assert got is out
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=0.25)[:, :, 0]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: {**a, "q": a["q"].double()}, "q must be"),
        (lambda a: {**a, "k": a["k"][:, :1]}, "do not match"),
        (lambda a: {**a, "q": a["q"].transpose(1, 2).contiguous().transpose(1, 2)}, "contiguous"),
        (lambda a: {**a, "mask": torch.zeros(2, 5)}, "mask must be"),
        (lambda a: {**a, "kv_index": torch.zeros(2, 6, dtype=torch.int64)}, "kv_index must be"),
        (lambda a: {**a, "kv_index": torch.full((2, 6), 2, dtype=torch.int32)}, r"\[0, 2\)"),
        (lambda a: {**a, "kv_index": torch.full((2, 6), -1, dtype=torch.int32)}, r"\[0, 2\)"),
        (lambda a: {**a, "keys": 7}, "keys must"),
        (lambda a: {**a, "keys": 0}, "keys must"),
        (lambda a: {**a, "out": torch.empty(2, 3, 9)}, "out must"),
    ],
)
def test_bad_arguments_raise(change, message):
    args = {
        "q": torch.zeros(2, 3, 8),
        "k": torch.zeros(2, 3, 6, 8),
        "v": torch.zeros(2, 3, 6, 8),
        "scale": 1.0,
    }
    with pytest.raises(ValueError, match=message):
        decode_attention(**change(args))
