"""Decoder state for one batch: a preallocated self-attention KV cache and cross-attention K/V.

The self-attention cache holds every layer's keys and values in one buffer of the final length,
so a step writes one time slice in place (no ``torch.cat`` per step). A beam reorder, or the
removal of finished sentences, is one gather over the filled prefix for all layers at once,
written straight into a second buffer of the same size (the two then swap roles): no temporary
copy and no fresh allocation per step (large fresh tensors cost page faults on every step).

Cross-attention keys/values are computed once per batch from the encoder states and stored once
per sentence, not once per beam (:func:`eightbit.engine.decoder.cross_attention` lets the beams
share them without a copy).
"""

from __future__ import annotations

import torch
from torch import Tensor


class _GatherBuffer:
    """A tensor whose leading rows along ``dim`` are live; :meth:`gather` rebuilds those rows
    from an index into a spare buffer of the same shape, allocated once, then swaps the two."""

    def __init__(self, data: Tensor, dim: int) -> None:
        self._data = data
        self._spare: Tensor | None = None
        self._dim = dim
        self.rows = data.shape[dim]

    def live(self, prefix: int | None = None) -> Tensor:
        """The live rows; with ``prefix``, only the first ``prefix`` time steps (dim -2)."""
        view = self._data.narrow(self._dim, 0, self.rows)
        return view if prefix is None else view.narrow(-2, 0, prefix)

    def gather(self, index: Tensor, prefix: int | None = None) -> None:
        """Live row ``i`` becomes old live row ``index[i]`` (only the first ``prefix`` steps are
        copied: the rest is unwritten)."""
        if self._spare is None:
            self._spare = torch.empty_like(self._data)
        target = self._spare.narrow(self._dim, 0, len(index))
        if prefix is not None:
            target = target.narrow(-2, 0, prefix)
        torch.index_select(self.live(prefix), self._dim, index, out=target)
        self._data, self._spare = self._spare, self._data
        self.rows = len(index)


class DecoderCache:
    """Self-attention K/V (grows by one position per step) and fixed cross-attention K/V.

    ``self_kv``: (layers, 2, rows, heads, max_steps, head_dim), rows = sentences x ``beams``
    (the beams of a sentence are adjacent rows); ``cross_kv``: (layers, 2, sentences, heads,
    source_len, head_dim); ``source_mask``: (sentences, source_len) additive float mask.
    """

    def __init__(self, self_kv: Tensor, cross_kv: Tensor, source_mask: Tensor, beams: int) -> None:
        self._self = _GatherBuffer(self_kv, dim=2)
        self._cross = _GatherBuffer(cross_kv, dim=2)
        self.beams = beams
        self.length = 0  # filled positions of the self-attention cache
        self._source_mask = source_mask
        self.cross_mask = self._per_head(source_mask)

    def _per_head(self, mask: Tensor) -> Tensor:
        """(sentences, S) -> (1, sentences * heads, 1, S): one row per (sentence, head)."""
        heads = self._cross.live().shape[3]
        return mask.repeat_interleave(heads, dim=0)[None, :, None, :]

    @property
    def rows(self) -> int:
        return self._self.rows

    def write(self, layer: int, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Store this step's ``key``/``value`` (rows, heads, head_dim) for ``layer``; return the
        layer's keys and values so far, (rows, heads, length + 1, head_dim) each."""
        slot = self._self.live(self.length + 1)[layer]
        slot[0, :, :, self.length] = key
        slot[1, :, :, self.length] = value
        return slot[0], slot[1]

    def cross(self, layer: int) -> tuple[Tensor, Tensor]:
        """Cross-attention keys and values of ``layer``, (sentences, heads, source_len, hd)."""
        kv = self._cross.live()[layer]
        return kv[0], kv[1]

    def advance(self) -> None:
        self.length += 1

    def reorder(self, rows: Tensor) -> None:
        """Beam search: row ``i`` continues from old row ``rows[i]`` (same sentence)."""
        self._self.gather(rows, self.length)

    def keep(self, sentences: Tensor, rows: Tensor) -> None:
        """Drop finished sentences: keep only ``sentences`` (sorted old sentence indices) and,
        in the self-attention cache, ``rows`` (their rows, reordered as in :meth:`reorder`)."""
        self._self.gather(rows, self.length)
        self._cross.gather(sentences)
        self._source_mask = self._source_mask.index_select(0, sentences)
        self.cross_mask = self._per_head(self._source_mask)
