"""Input pipeline: sort by length, pack by token budget (Bhandare et al. 2019, section 5).

Sorting puts sentences of similar length together (little padding); packing fills each batch up to
a token budget (padded tokens, i.e. ``batch size x longest length``), so short sentences travel in
large batches and long ones in small batches. Callers restore the original order with the
indices each batch carries.
"""

from __future__ import annotations

from collections.abc import Sequence


def pack_by_tokens(
    lengths: Sequence[int], max_tokens: int, max_sentences: int | None = None
) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches, longest first.

    A batch's cost is ``len(batch) * max(length in batch)``; each batch stays within
    ``max_tokens`` (a single sentence longer than the budget gets a batch of its own) and
    ``max_sentences``. Deterministic: ties keep input order.
    """
    if max_tokens <= 0 or (max_sentences is not None and max_sentences <= 0):
        raise ValueError("max_tokens and max_sentences must be positive")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        full = max_sentences is not None and len(current) >= max_sentences
        if current and (full or (len(current) + 1) * longest > max_tokens):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def restore_order(batches: Sequence[Sequence[int]], outputs: Sequence[Sequence[object]]) -> list:
    """Put per-batch outputs back in the original input order."""
    total = sum(len(b) for b in batches)
    result: list[object] = [None] * total
    for batch, batch_out in zip(batches, outputs, strict=True):
        if len(batch) != len(batch_out):
            raise ValueError("a batch's outputs do not match its inputs")
        for index, value in zip(batch, batch_out, strict=True):
            result[index] = value
    return result
