"""Decoder state for one batch: a preallocated self-attention KV cache and cross-attention K/V.

The self-attention cache holds every layer's keys and values in one buffer of the final length,
so a step writes one time slice in place (no ``torch.cat`` per step) and a beam reorder or the
removal of finished sentences is one gather over the filled prefix for all layers at once.
Cross-attention keys/values are computed once per batch from the encoder states.
"""

from __future__ import annotations

from torch import Tensor


class DecoderCache:
    """Self-attention K/V (grows by one position per step) and fixed cross-attention K/V.

    ``self_kv``: (layers, 2, rows, heads, max_steps, head_dim); ``cross_kv``: (layers, 2, rows,
    heads, source_len, head_dim); ``cross_mask``: (rows, 1, 1, source_len) additive float mask.
    """

    def __init__(self, self_kv: Tensor, cross_kv: Tensor, cross_mask: Tensor) -> None:
        self.self_kv = self_kv
        self.cross_kv = cross_kv
        self.cross_mask = cross_mask
        self.length = 0  # filled positions of the self-attention cache

    @property
    def rows(self) -> int:
        return self.self_kv.shape[2]

    def write(self, layer: int, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Store this step's ``key``/``value`` (rows, heads, head_dim) for ``layer``; return the
        layer's keys and values so far, (rows, heads, length + 1, head_dim) each."""
        slot = self.self_kv[layer]
        slot[0, :, :, self.length] = key
        slot[1, :, :, self.length] = value
        end = self.length + 1
        return slot[0, :, :, :end], slot[1, :, :, :end]

    def cross(self, layer: int) -> tuple[Tensor, Tensor]:
        kv = self.cross_kv[layer]
        return kv[0], kv[1]

    def advance(self) -> None:
        self.length += 1

    def reorder(self, rows: Tensor) -> None:
        """Beam search: row ``i`` continues from old row ``rows[i]`` (same sentence)."""
        filled = self.self_kv[:, :, :, :, : self.length]
        filled.copy_(filled.index_select(2, rows))

    def keep(self, rows: Tensor) -> None:
        """Drop finished sentences: keep only ``rows`` (and reorder them, as in :meth:`reorder`)."""
        kept = self.self_kv.new_empty((*self.self_kv.shape[:2], len(rows), *self.self_kv.shape[3:]))
        end = self.length
        kept[:, :, :, :, :end] = self.self_kv[:, :, :, :, :end].index_select(2, rows)
        self.self_kv = kept
        self.cross_kv = self.cross_kv.index_select(2, rows)
        self.cross_mask = self.cross_mask.index_select(0, rows)
