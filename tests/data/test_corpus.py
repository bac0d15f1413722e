import re

import pytest

from eightbit.data.corpus import load_parallel_corpus
from eightbit.errors import EightbitError


def test_split_sizes_and_disjointness():
    splits = {s: load_parallel_corpus(s, with_refs=True) for s in ("train", "dev", "test")}
    assert len(splits["dev"]) == 500 and len(splits["test"]) == 1000
    assert len(splits["train"]) > 29000
    refs = [{r[0] for r in rows} for rows in splits.values()]
    assert not (refs[0] & refs[1]) and not (refs[0] & refs[2]) and not (refs[1] & refs[2])


def test_splits_are_deterministic():
    assert load_parallel_corpus("test")[:5] == load_parallel_corpus("test")[:5]
    assert load_parallel_corpus("test")[0] == (load_parallel_corpus("test", with_refs=True)[0][1:])


def test_text_is_clean():
    for en, es in load_parallel_corpus("train"):
        assert en and es
        assert not re.search(r"[<>]|strong:|savlm|\s{2}", en + " " + es), (en, es)


def test_unknown_split_is_a_clear_error():
    with pytest.raises(EightbitError, match="unknown corpus split"):
        load_parallel_corpus("validation")
