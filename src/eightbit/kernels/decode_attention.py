"""Decode attention: one query per (row, head), float32, in eightbit's kernel
(``csrc/decode_attention.c``).

``out[r, h] = softmax(scale * q[r, h] . k[i(r, j), h, j] + mask[r, j]) v[i(r, j), h, j]`` over the
keys ``j < T``, where ``i(r, j) = kv_index[r, j]`` (default: ``r``). Operands are read in place
through their strides (only the head dimension must be contiguous), so the same kernel serves
the engine's caches and Hugging Face's tensors. The arithmetic of a row depends only on its own
query, keys, values, mask and ``scale``: not on the strides, the other rows, the thread count
or the instruction set (AVX-512 and AVX2 give the same bits), so a row gives the same bits in
``generate`` and in the eightbit engine. Torch's SDPA kernels, built for long queries, spent
about 500 us on a decoder step that is 1 MFLOP here.
"""

from __future__ import annotations

import torch
from torch import Tensor

from eightbit.kernels import native

__all__ = ["decode_attention"]


def _strided(t: Tensor, name: str, ndim: int, dtype: torch.dtype = torch.float32) -> None:
    if not isinstance(t, Tensor) or t.dtype != dtype or t.dim() != ndim or not t.is_cpu:
        raise ValueError(f"{name} must be a {ndim}-d {dtype} CPU tensor")


def _check(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, index: Tensor | None, keys: int
) -> None:
    _strided(q, "q", 3)
    _strided(k, "k", 4)
    _strided(v, "v", 4)
    rows, heads, head_dim = q.shape
    kv_rows, _, stored, _ = k.shape
    if not 1 <= keys <= stored:
        raise ValueError(f"keys must lie in [1, {stored}], got {keys}")
    if k.shape[1:] != (heads, stored, head_dim) or v.shape != k.shape:
        raise ValueError(
            f"q {tuple(q.shape)}, k {tuple(k.shape)} and v {tuple(v.shape)} do not match "
            "(rows, heads, head_dim) and (kv_rows, heads, keys, head_dim)"
        )
    if q.stride(-1) != 1 or k.stride(-1) != 1 or v.stride(-1) != 1:
        raise ValueError("q, k and v need a contiguous head dimension (stride 1)")
    if mask is not None:
        _strided(mask, "mask", 2)
        if mask.shape != (rows, keys) or mask.stride(-1) != 1:
            raise ValueError(f"mask must be ({rows}, {keys}) with unit key stride")
    if index is None:
        if kv_rows < rows:
            raise ValueError(f"{rows} query rows read {kv_rows} key rows: give kv_index")
        return
    _strided(index, "kv_index", 2, torch.int32)
    if index.shape != (rows, keys):
        raise ValueError(f"kv_index must have shape ({rows}, {keys}), got {tuple(index.shape)}")
    if index.numel():
        low, high = torch.aminmax(index)
        if int(low) < 0 or int(high) >= kv_rows:
            raise ValueError(f"kv_index must lie in [0, {kv_rows})")


def decode_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    scale: float,
    mask: Tensor | None = None,
    kv_index: Tensor | None = None,
    keys: int | None = None,
    out: Tensor | None = None,
    check: bool = True,
) -> Tensor:
    """Attention of one query per (row, head) over the first ``keys`` keys (default: all).

    ``q``: (rows, heads, head_dim); ``k``, ``v``: (kv_rows, heads, keys, head_dim), any strides
    with a contiguous head dimension; ``mask``: (rows, keys) additive (0 or -inf), unit key
    stride, or None; ``kv_index``: (rows, keys) int32, the key row that query row ``r`` reads for
    key ``j`` (strides may be 0: ``r // beams`` for K/V shared by a sentence's beams), or None for
    ``r``; ``keys``: attend over the first ``keys`` of the stored keys (a cache filled so far;
    mask and index then (rows, keys)). ``out``: (rows, heads, head_dim) with a contiguous head
    dimension, or None for a new contiguous tensor, returned. ``check=False`` skips the
    argument checks (for callers that built the arguments themselves: an index outside
    ``[0, kv_rows)`` reads outside ``k``).
    """
    keys = k.shape[2] if keys is None else keys
    if check:
        _check(q, k, v, mask, kv_index, keys)
    rows, heads, head_dim = q.shape
    if out is None:
        out = torch.empty(rows, heads, head_dim)
    elif check:
        _strided(out, "out", 3)
        if out.shape != q.shape or out.stride(-1) != 1:
            raise ValueError(f"out must be {tuple(q.shape)} with a contiguous head dimension")
    qs, ks, vs, os_ = q.stride(), k.stride(), v.stride(), out.stride()
    if mask is None:
        mask_ptr, mask_rs = None, 0
    else:
        mask_ptr, mask_rs = mask.data_ptr(), mask.stride(0)
    if kv_index is None:
        index_ptr, index_rs, index_ts = None, 0, 0
    else:
        index_ptr = kv_index.data_ptr()
        index_rs, index_ts = kv_index.stride()
    status = native._load().eb_decode_attention(
        q.data_ptr(), qs[0], qs[1], k.data_ptr(), ks[0], ks[1], ks[2], v.data_ptr(), vs[0],
        vs[1], vs[2], mask_ptr, mask_rs, index_ptr, index_rs, index_ts, out.data_ptr(), os_[0],
        os_[1], rows, heads, keys, head_dim, scale, torch.get_num_threads(),
    )  # fmt: skip
    native._check_status(status)
    return out
