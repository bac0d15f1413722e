"""Decoder state for one batch, attended with SDPA: a preallocated self-attention KV cache and
cross-attention K/V.

The self-attention cache holds every layer's keys and values in one buffer, so a step writes
one time slice in place (no ``torch.cat`` per step). A beam reorder, or the removal of finished
sentences, is one gather over the filled prefix for all layers at once, written straight into a
second buffer of the same size (the two then swap roles): no temporary copy and no fresh
allocation per step (large fresh tensors cost page faults on every step).

Beam search reorders after every step, so its gathers also lay the keys out compactly: room for
exactly the next step's slice, so that attention reads each (row, head)'s keys as one contiguous
block instead of a prefix of a ``max_steps`` stride (cheaper SDPA on the same values, and fewer
pages touched by the gather). Greedy search never reorders and keeps the full-length layout.

Cross-attention keys/values are computed once per batch from the encoder states and stored once
per sentence, not once per beam (:meth:`DecoderCache.cross_attention` lets the beams share
them without a copy).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


class _GatherBuffer:
    """A contiguous tensor, rebuilt by :meth:`gather` from an index along ``dim`` into a spare
    buffer allocated once (of the first tensor's size), the two then swap roles."""

    def __init__(self, data: Tensor, dim: int) -> None:
        self.data = data
        self._flat = data.view(-1)
        self._spare: Tensor | None = None
        self._dim = dim

    @property
    def rows(self) -> int:
        return self.data.shape[self._dim]

    def gather(self, index: Tensor, prefix: int | None = None, capacity: int | None = None) -> None:
        """Row ``i`` becomes old row ``index[i]``. With ``prefix``, only the first ``prefix``
        time steps (dim -2) are copied (the rest is unwritten); ``capacity``: the time steps
        the new layout has room for (default: as now; at most the first tensor's)."""
        if self._spare is None:
            self._spare = torch.empty_like(self._flat)
        shape = list(self.data.shape)
        shape[self._dim] = len(index)
        if capacity is not None:
            shape[-2] = capacity
        target = self._spare[: math.prod(shape)].view(shape)
        source = self.data
        if prefix is not None:
            source, target_prefix = source.narrow(-2, 0, prefix), target.narrow(-2, 0, prefix)
        else:
            target_prefix = target
        torch.index_select(source, self._dim, index, out=target_prefix)
        self._flat, self._spare = self._spare, self._flat
        self.data = target


class DecoderCache:
    """Self-attention K/V (grows by one position per step) and fixed cross-attention K/V.

    ``self_kv``: (layers, 2, rows, heads, max_steps, head_dim), rows = sentences x ``beams``
    (the beams of a sentence are adjacent rows); ``cross_kv``: (layers, 2, sentences, heads,
    source_len, head_dim); ``source_mask``: (sentences, source_len) additive float mask.
    ``compact``: gathers leave room for one more step only (default: when ``beams > 1``).
    """

    def __init__(
        self,
        self_kv: Tensor,
        cross_kv: Tensor,
        source_mask: Tensor,
        beams: int,
        compact: bool | None = None,
    ) -> None:
        self._self = _GatherBuffer(self_kv, dim=2)
        self._cross = _GatherBuffer(cross_kv, dim=2)
        self._max_steps = self_kv.shape[-2]
        self._compact = beams > 1 if compact is None else compact
        self.beams = beams
        self.length = 0  # filled positions of the self-attention cache
        self._source_mask = source_mask
        self.cross_mask = self._per_head(source_mask)

    def _per_head(self, mask: Tensor) -> Tensor:
        """(sentences, S) -> (1, sentences * heads, 1, S): one row per (sentence, head)."""
        heads = self._cross.data.shape[3]
        return mask.repeat_interleave(heads, dim=0)[None, :, None, :]

    @property
    def rows(self) -> int:
        return self._self.rows

    def write(self, layer: int, kv: Tensor) -> tuple[Tensor, Tensor]:
        """Store this step's keys and values ``kv`` (2, rows, heads, head_dim) for ``layer``;
        return the layer's keys and values so far, (rows, heads, length + 1, head_dim) each."""
        if self.length == self._self.data.shape[-2]:  # a compact layout, and no gather since
            self._self.gather(torch.arange(self.rows), self.length, self._max_steps)
        slot = self._self.data[layer].narrow(-2, 0, self.length + 1)
        slot.select(-2, self.length).copy_(kv)
        return slot[0], slot[1]

    def self_attention(self, layer: int, qkv: Tensor) -> Tensor:
        """Store this step's keys and values of ``qkv`` (rows, 3, heads, head_dim) for
        ``layer`` and attend over every step so far with SDPA; returns (rows, heads * hd)."""
        rows, _, heads, head_dim = qkv.shape
        keys, values = self.write(layer, qkv[:, 1:].transpose(0, 1))  # (rows, H, t, hd) each
        q = qkv[:, 0].unsqueeze(2)  # (rows, H, 1, hd)
        attended = F.scaled_dot_product_attention(q, keys, values, scale=head_dim**-0.5)
        return attended.view(rows, heads * head_dim)

    def cross_attention(self, layer: int, q: Tensor) -> Tensor:
        """Cross-attention of ``q`` (rows, H, hd) -> (rows, H * hd) over K/V stored once per
        sentence.

        Every row stays a query of its own over its sentence's keys (so the arithmetic is that
        of ``generate``, which repeats the keys per beam; beams querying together as one batch
        would change the low bits). The batch dimension is the beam and the "heads" are
        (sentence, head) pairs, so every beam reads the same keys through a stride-0 view
        instead of a copy.
        """
        rows, heads, head_dim = q.shape
        beams, pairs = self.beams, rows // self.beams * heads
        keys, values = self.cross(layer)  # (sentences, H, S, hd)
        source_len = keys.shape[2]
        keys = keys.reshape(1, pairs, source_len, head_dim).expand(beams, -1, -1, -1)
        values = values.reshape(1, pairs, source_len, head_dim).expand(beams, -1, -1, -1)
        q = q.view(-1, beams, heads, head_dim).transpose(0, 1).reshape(beams, pairs, 1, head_dim)
        attended = F.scaled_dot_product_attention(
            q, keys, values, attn_mask=self.cross_mask, scale=head_dim**-0.5
        )  # (beams, sentences * H, 1, hd)
        return attended.view(beams, -1, heads * head_dim).transpose(0, 1).reshape(rows, -1)

    def cross(self, layer: int) -> tuple[Tensor, Tensor]:
        """Cross-attention keys and values of ``layer``, (sentences, heads, source_len, hd)."""
        kv = self._cross.data[layer]
        return kv[0], kv[1]

    def advance(self) -> None:
        self.length += 1

    def _capacity(self) -> int | None:
        return self.length + 1 if self._compact else None

    def reorder(self, rows: Tensor) -> None:
        """Beam search: row ``i`` continues from old row ``rows[i]`` (same sentence)."""
        self._self.gather(rows, self.length, self._capacity())

    def keep(self, sentences: Tensor, rows: Tensor) -> None:
        """Drop finished sentences: keep only ``sentences`` (sorted old sentence indices) and,
        in the self-attention cache, ``rows`` (their rows, reordered as in :meth:`reorder`)."""
        self._self.gather(rows, self.length, self._capacity())
        self._cross.gather(sentences)
        self._source_mask = self._source_mask.index_select(0, sentences)
        self.cross_mask = self._per_head(self._source_mask)
