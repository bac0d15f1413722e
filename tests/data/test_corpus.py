"""The shipped English-Spanish corpus: fixed splits, clean text."""

import hashlib
import re
from importlib import resources

import pytest

from eightbit.data.corpus import DEV_SIZE, TEST_SIZE, load_parallel_corpus
from eightbit.errors import EightbitError

SPLITS = ("train", "dev", "test")
# markup remnants, Strong's numbers, doubled spaces, a lower-case letter glued to an upper-case
# one ("Godcreated" -> "God created" is fine, "bornSon" is not), a word glued after punctuation
LEFTOVERS = re.compile(
    r"[<>{}\[\]|\\]|strong:|savlm|transChange|\s{2}|[a-záéíóúñ][A-ZÁÉÍÓÚÑ]|[,;:!?][^\W\d_]"
)


@pytest.fixture(scope="module")
def splits() -> dict[str, list[tuple[str, ...]]]:
    return {s: load_parallel_corpus(s, with_refs=True) for s in SPLITS}


def test_split_sizes(splits):
    assert len(splits["dev"]) == DEV_SIZE == 500
    assert len(splits["test"]) == TEST_SIZE == 1000
    assert 29000 < len(splits["train"]) < 31000


def test_splits_are_disjoint_and_cover_the_corpus(splits):
    refs = {s: {row[0] for row in rows} for s, rows in splits.items()}
    assert all(len(refs[s]) == len(splits[s]) for s in SPLITS)  # no duplicated reference
    assert not refs["train"] & refs["dev"]
    assert not refs["train"] & refs["test"]
    assert not refs["dev"] & refs["test"]
    assert sum(len(r) for r in refs.values()) == len(set().union(*refs.values()))


def test_splits_are_deterministic(splits):
    assert load_parallel_corpus("test") == [row[1:] for row in splits["test"]]
    # pinned: a different shuffle (seed, corpus order) would change every reported number
    assert splits["test"][0][0] == "Genesis 1:5"
    assert splits["dev"][0][0] == "Genesis 3:9"


def test_text_is_clean(splits):
    for rows in splits.values():
        for ref, en, es in rows:
            assert en and es and en == en.strip() and es == es.strip(), ref
            assert not LEFTOVERS.search(en), (ref, en)
            assert not LEFTOVERS.search(es), (ref, es)


def test_chapter_openings_are_not_set_in_capitals(splits):
    spanish = [es for rows in splits.values() for _, _, es in rows]
    assert not [s for s in spanish if re.search(r"\b[A-ZÁÉÍÓÚÑ]{2,}\b", s)]


def test_stale_psalm_headings_are_gone(splits):
    english = [en for rows in splits.values() for _, en, _ in rows]
    assert sum("A praise psalm by David." in s for s in english) <= 1


def test_unknown_split_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown corpus split"):
        load_parallel_corpus("validation")
    with pytest.raises(EightbitError):
        load_parallel_corpus("")


def test_provenance_records_the_shipped_file():
    corpus = resources.files("eightbit.assets.corpus")
    digest = hashlib.sha256(corpus.joinpath("bible-en-es.tsv.xz").read_bytes()).hexdigest()
    assert digest in corpus.joinpath("PROVENANCE.md").read_text(encoding="utf-8")
