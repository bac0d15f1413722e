"""The decoder cache's gathers and the shared-key cross-attention, against plain tensor code."""

import torch
import torch.nn.functional as F

from eightbit.engine.cache import DecoderCache

LAYERS, HEADS, HEAD_DIM, STEPS, SOURCE = 2, 4, 8, 6, 5


def _source_mask(sentences: int) -> torch.Tensor:
    mask = torch.zeros(sentences, SOURCE)
    mask[::2, -2:] = torch.finfo(mask.dtype).min  # every other sentence is 3 tokens long
    return mask


def _cache(sentences: int, beams: int, seed: int = 0) -> DecoderCache:
    generator = torch.Generator().manual_seed(seed)
    rows = sentences * beams
    self_kv = torch.randn(LAYERS, 2, rows, HEADS, STEPS, HEAD_DIM, generator=generator)
    cross_kv = torch.randn(LAYERS, 2, sentences, HEADS, SOURCE, HEAD_DIM, generator=generator)
    return DecoderCache(self_kv, cross_kv, _source_mask(sentences), beams)


def _filled(cache: DecoderCache) -> torch.Tensor:
    return torch.stack(
        [torch.stack(cache.write(i, torch.stack(_step_kv(cache)))) for i in range(LAYERS)]
    )


def _step_kv(cache: DecoderCache) -> tuple[torch.Tensor, torch.Tensor]:
    key = torch.full((cache.rows, HEADS, HEAD_DIM), float(cache.length))
    return key, -key


def test_reorder_and_keep_gather_the_filled_prefix_by_row():
    cache = _cache(sentences=3, beams=2)
    for _ in range(3):
        before = _filled(cache)  # (layers, 2, rows, H, length + 1, hd)
        cache.advance()
    rows = torch.tensor([1, 1, 0, 3, 5, 4])
    cache.reorder(rows)
    after = _filled(cache)
    assert torch.equal(after[..., :3, :], before.index_select(2, rows))
    cache.advance()
    kept = torch.tensor([4, 5, 0, 1])  # sentences 2 and 0, by row
    cross_before = torch.stack([torch.stack(cache.cross(i)) for i in range(LAYERS)])
    cache.keep(torch.tensor([0, 2]), kept)
    assert cache.rows == 4
    assert torch.equal(_filled(cache)[..., :4, :], after.index_select(2, kept))
    cross_after = torch.stack([torch.stack(cache.cross(i)) for i in range(LAYERS)])
    assert torch.equal(cross_after, cross_before[:, :, [0, 2]])


def test_cross_attention_equals_one_query_per_row_over_repeated_keys():
    """Bit for bit: the arithmetic of ``generate``, which repeats the keys for every beam."""
    sentences, beams = 3, 4
    cache = _cache(sentences, beams)
    q = torch.randn(sentences * beams, HEADS, HEAD_DIM)
    for layer in range(LAYERS):
        keys, values = (t.repeat_interleave(beams, 0) for t in cache.cross(layer))
        mask = _source_mask(sentences).repeat_interleave(beams, 0)[:, None, None, :]
        expected = F.scaled_dot_product_attention(
            q[:, :, None], keys, values, attn_mask=mask, scale=HEAD_DIM**-0.5
        )
        got = cache.cross_attention(layer, q)
        assert torch.equal(got, expected.reshape(sentences * beams, HEADS * HEAD_DIM))


def test_beam_gathers_lay_keys_out_contiguously_and_writes_past_them_still_work():
    cache = _cache(sentences=2, beams=2)  # beams > 1: compact gathers
    for _ in range(2):
        before = _filled(cache)
        cache.advance()
    rows = torch.tensor([1, 0, 2, 2])
    cache.reorder(rows)
    for layer in range(LAYERS):
        keys, values = cache.write(layer, torch.stack(_step_kv(cache)))
        assert keys.is_contiguous() and values.is_contiguous()  # room for exactly this step
    cache.advance()
    after = _filled(cache)  # no gather since this step: the cache grows back to full length
    assert torch.equal(after[..., :2, :], before.index_select(2, rows))
    sign = torch.tensor([1.0, -1.0]).view(1, 2, 1, 1, 1)
    assert torch.equal(after[..., 2, :], (2.0 * sign).expand_as(after[..., 2, :]))
    assert torch.equal(after[..., 3, :], (3.0 * sign).expand_as(after[..., 3, :]))
