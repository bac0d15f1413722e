"""Decoder state for the native decode attention: K/V stay where they were written.

Every step writes its self-attention keys and values for all rows as one block (time-major:
``(layers, 2, max_steps, rows, heads, head_dim)``), and nothing moves afterwards. Which slot a
row reads for a past step is an ancestry table ``(rows, max_steps)`` int32: row ``r`` at step
``s`` reads the slot its beam ancestor wrote at step ``s``. A beam reorder or the removal of
finished sentences gathers that table (``rows x steps`` int32) instead of ``layers x 2 x rows x
heads x steps x head_dim`` floats; the kernel then reads the same values in the same order, so
the results are those of the gathered cache bit for bit.

Cross-attention K/V are stored once per sentence and never gathered either: each row reads its
sentence's through a (rows, source_len) index with a zero key stride, and only that index and
the row's padding mask follow a reorder.
"""

from __future__ import annotations

import math
import threading

import torch
from torch import Tensor

from eightbit.kernels.decode_attention import decode_attention

_buffers = threading.local()


def workspace(name: str, shape: tuple[int, ...]) -> Tensor:
    """An uninitialized float32 tensor of ``shape`` in this thread's buffer ``name``, kept for the
    next batch: a large fresh tensor costs a page fault per 4 KiB page on first write (a step's
    K/V copy into a fresh cache took 6x as long as into a reused one), a kept buffer only when
    it grows. It grows to the next power of two (length-sorted batches grow a little each
    time; pages never written cost no memory). One batch at a time per thread: the next call
    with ``name`` reuses the memory."""
    size = math.prod(shape)
    kept = getattr(_buffers, name, None)
    if kept is None or kept.numel() < size:
        kept = torch.empty(1 << max(size - 1, 1).bit_length())
        setattr(_buffers, name, kept)
    return kept[:size].view(shape)


class NativeDecoderCache:
    """Self-attention K/V by step, an ancestry table, and cross-attention K/V per sentence.

    ``self_kv``: (layers, 2, max_steps, rows, heads, head_dim), rows = sentences x ``beams``
    (a sentence's beams adjacent); ``cross_kv``: (layers, 2, sentences, heads, source_len,
    head_dim); ``source_mask``: (sentences, source_len) additive float mask (0 or -inf).
    """

    def __init__(self, self_kv: Tensor, cross_kv: Tensor, source_mask: Tensor, beams: int) -> None:
        max_steps, rows, _, head_dim = self_kv.shape[2:]
        self.beams = beams
        self.length = 0  # filled time steps
        self._kv = self_kv
        # per layer: (rows, heads, max_steps, head_dim) views of the keys and values, in place
        self._keys = [self_kv[i, 0].permute(1, 2, 0, 3) for i in range(self_kv.shape[0])]
        self._values = [self_kv[i, 1].permute(1, 2, 0, 3) for i in range(self_kv.shape[0])]
        self._cross = cross_kv
        self._table = torch.empty(rows, max_steps, dtype=torch.int32)
        self._spare = torch.empty_like(self._table)
        self._arange = torch.arange(rows, dtype=torch.int32)
        self._rows = rows
        self._scale = head_dim**-0.5
        sentence = torch.arange(rows, dtype=torch.int32) // beams
        self._set_rows(sentence, source_mask.index_select(0, sentence.long()))

    def _set_rows(self, sentence: Tensor, mask: Tensor) -> None:
        """Each row's sentence (its cross K/V row) and its (rows, source_len) padding mask."""
        source_len = self._cross.shape[4]
        self._sentence = sentence
        self._cross_index = sentence[:, None].expand(-1, source_len)
        self._mask = mask

    @property
    def rows(self) -> int:
        return self._rows

    def self_attention(self, layer: int, qkv: Tensor) -> Tensor:
        """Store this step's keys and values of ``qkv`` (rows, 3, heads, head_dim) for
        ``layer`` and attend over every step so far; returns (rows, heads * head_dim)."""
        t, rows = self.length, self._rows
        if layer == 0:
            self._table[:rows, t].copy_(self._arange[:rows])
        self._kv[layer, :, t, :rows].copy_(qkv[:, 1:].transpose(0, 1))
        out = decode_attention(
            qkv[:, 0], self._keys[layer], self._values[layer], self._scale,
            kv_index=self._table[:rows, : t + 1], keys=t + 1, check=False,
        )  # fmt: skip
        return out.view(rows, -1)

    def cross_attention(self, layer: int, q: Tensor) -> Tensor:
        """Cross-attention of ``q`` (rows, heads, head_dim) -> (rows, heads * head_dim)."""
        kv = self._cross[layer]
        out = decode_attention(
            q, kv[0], kv[1], self._scale, mask=self._mask, kv_index=self._cross_index,
            check=False,
        )  # fmt: skip
        return out.view(q.shape[0], -1)

    def advance(self) -> None:
        self.length += 1

    def reorder(self, rows: Tensor) -> None:
        """Beam search: row ``i`` continues from old row ``rows[i]`` (same sentence)."""
        self._gather_table(rows)

    def keep(self, sentences: Tensor, rows: Tensor) -> None:
        """Drop finished sentences: keep only ``sentences`` (sorted old sentence indices) and
        ``rows`` (their rows, reordered as in :meth:`reorder`)."""
        del sentences  # the rows' own sentence indices follow them
        self._gather_table(rows)
        self._set_rows(self._sentence.index_select(0, rows), self._mask.index_select(0, rows))

    def _gather_table(self, rows: Tensor) -> None:
        n, t = len(rows), self.length
        torch.index_select(self._table[: self._rows, :t], 0, rows, out=self._spare[:n, :t])
        self._table, self._spare = self._spare, self._table
        self._rows = n
