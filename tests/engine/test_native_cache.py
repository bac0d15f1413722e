"""The ancestry cache of the native decode attention against the gathered cache: same bits."""

import pytest
import torch

from eightbit.engine.cache import DecoderCache
from eightbit.engine.native_cache import NativeDecoderCache, workspace
from eightbit.kernels import native
from eightbit.kernels.decode_attention import decode_attention

pytestmark = pytest.mark.skipif(not native.is_available(), reason="native kernel unavailable")

LAYERS, HEADS, HEAD_DIM, STEPS, SOURCE = 2, 4, 16, 7, 6


def _caches(sentences: int, beams: int, seed: int = 0):
    """A native cache and a gathered one over the same cross K/V and source mask."""
    g = torch.Generator().manual_seed(seed)
    rows = sentences * beams
    cross_kv = torch.randn(LAYERS, 2, sentences, HEADS, SOURCE, HEAD_DIM, generator=g)
    mask = torch.zeros(sentences, SOURCE)
    mask[::2, -2:] = float("-inf")  # every other sentence is shorter
    ancestry = NativeDecoderCache(
        torch.empty(LAYERS, 2, STEPS, rows, HEADS, HEAD_DIM), cross_kv, mask, beams
    )
    gathered = DecoderCache(
        torch.empty(LAYERS, 2, rows, HEADS, STEPS, HEAD_DIM), cross_kv.clone(), mask, beams
    )
    return ancestry, gathered


def _step(ancestry: NativeDecoderCache, gathered: DecoderCache, g: torch.Generator) -> None:
    """One step of both caches on the same projections: the same bits out of each layer."""
    rows = ancestry.rows
    assert gathered.rows == rows
    for layer in range(LAYERS):
        qkv = torch.randn(rows, 3, HEADS, HEAD_DIM, generator=g)
        got = ancestry.self_attention(layer, qkv)
        keys, values = gathered.write(layer, qkv[:, 1:].transpose(0, 1))
        expected = decode_attention(qkv[:, 0], keys, values, HEAD_DIM**-0.5)
        assert torch.equal(got, expected.view(rows, -1))
        q = torch.randn(rows, HEADS, HEAD_DIM, generator=g)
        keys, values = (t.repeat_interleave(gathered.beams, 0) for t in gathered.cross(layer))
        mask = gathered.cross_mask[0, ::HEADS, 0].repeat_interleave(gathered.beams, 0)
        mask = torch.where(mask < 0, float("-inf"), 0.0)
        expected = decode_attention(q, keys, values, HEAD_DIM**-0.5, mask=mask)
        assert torch.equal(ancestry.cross_attention(layer, q), expected.view(rows, -1))
    ancestry.advance()
    gathered.advance()


def test_ancestry_table_reads_what_the_gathered_cache_holds():
    sentences, beams = 3, 2
    ancestry, gathered = _caches(sentences, beams)
    g = torch.Generator().manual_seed(1)
    _step(ancestry, gathered, g)
    for rows in ([1, 1, 2, 3, 5, 5], [0, 0, 3, 2, 4, 5]):  # beam reorders within sentences
        ancestry.reorder(torch.tensor(rows))
        gathered.reorder(torch.tensor(rows))
        _step(ancestry, gathered, g)
    sentences_kept, rows_kept = torch.tensor([0, 2]), torch.tensor([1, 0, 5, 5])
    ancestry.keep(sentences_kept, rows_kept)  # sentence 1 finished
    gathered.keep(sentences_kept, rows_kept)
    _step(ancestry, gathered, g)
    ancestry.reorder(torch.tensor([1, 1, 2, 3]))
    gathered.reorder(torch.tensor([1, 1, 2, 3]))
    for _ in range(2):
        _step(ancestry, gathered, g)
    assert ancestry.length == gathered.length == 6


def test_greedy_rows_keep_their_own_slots():
    ancestry, gathered = _caches(sentences=4, beams=1)
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        _step(ancestry, gathered, g)
    ancestry.keep(torch.tensor([0, 3]), torch.tensor([0, 3]))
    gathered.keep(torch.tensor([0, 3]), torch.tensor([0, 3]))
    for _ in range(2):
        _step(ancestry, gathered, g)


def test_workspace_is_kept_for_the_next_batch_and_grows_when_needed():
    first = workspace("test", (3, 5))
    again = workspace("test", (2, 7))
    assert again.data_ptr() == first.data_ptr() and again.shape == (2, 7)
    bigger = workspace("test", (40, 5))
    assert bigger.shape == (40, 5) and bigger.data_ptr() != first.data_ptr()
