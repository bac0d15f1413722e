"""The English-Spanish parallel corpus shipped with eightbit, and its fixed splits.

Verse-aligned World English Bible / Reina-Valera 1909 (public domain; see
``assets/corpus/PROVENANCE.md`` and ``scripts/build_bible_corpus.py``). The splits are fixed by
a seeded shuffle: dev 500 pairs, test 1,000 pairs, the rest train.
"""

from __future__ import annotations

import functools
import io
import lzma
import random
from importlib import resources

from eightbit.errors import EightbitError

CORPUS_FILE = "bible-en-es.tsv.xz"
SPLITS = ("train", "dev", "test")
DEV_SIZE = 500
TEST_SIZE = 1000
SPLIT_SEED = 20191907  # fixed forever: changing it changes every reported number


@functools.lru_cache(maxsize=1)
def _all_pairs() -> tuple[tuple[str, str, str], ...]:
    data = resources.files("eightbit.assets.corpus").joinpath(CORPUS_FILE).read_bytes()
    text = lzma.decompress(data).decode("utf-8")
    rows = [line.split("\t") for line in io.StringIO(text).read().splitlines()[1:]]
    return tuple((ref, en, es) for ref, en, es in rows)


@functools.lru_cache(maxsize=1)
def _split_indices() -> dict[str, tuple[int, ...]]:
    order = list(range(len(_all_pairs())))
    random.Random(SPLIT_SEED).shuffle(order)
    return {
        "dev": tuple(sorted(order[:DEV_SIZE])),
        "test": tuple(sorted(order[DEV_SIZE : DEV_SIZE + TEST_SIZE])),
        "train": tuple(sorted(order[DEV_SIZE + TEST_SIZE :])),
    }


def load_parallel_corpus(split: str, with_refs: bool = False) -> list[tuple[str, ...]]:
    """``(english, spanish)`` pairs of ``split`` (``train``, ``dev`` or ``test``), in corpus
    order; ``with_refs`` prepends the verse reference."""
    if split not in SPLITS:
        raise EightbitError(f"unknown corpus split {split!r}; expected one of {', '.join(SPLITS)}")
    pairs = _all_pairs()
    return [pairs[i] if with_refs else pairs[i][1:] for i in _split_indices()[split]]
