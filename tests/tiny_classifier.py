"""A tiny BERT classifier checkpoint and ~40 synthetic labeled texts (no downloads)."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from eightbit.data.classification import LabeledSplit

POSITIVE = ("good", "great", "fine", "nice", "happy", "love")
NEGATIVE = ("bad", "awful", "poor", "sad", "hate", "worse")
NEUTRAL = ("movie", "flight", "the", "a", "was", "food", "day", "service")
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def synthetic_split(n: int = 40, seed: int = 0) -> LabeledSplit:
    """Texts of 2-12 words; label 1 when a positive word is present, else 0."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = rng.choices(NEUTRAL, k=rng.randint(1, 10))
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label else NEGATIVE))
        texts.append(" ".join(words))
        labels.append(label)
    return LabeledSplit(tuple(texts), tuple(labels), ("negative", "positive"))


def write_tiny_bert(directory: Path, with_head: bool = False, num_labels: int = 2) -> Path:
    """A BERT checkpoint (hidden 32, 2 layers) and its word-level tokenizer in ``directory``."""
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + POSITIVE + NEGATIVE + NEUTRAL) + "\n")
    tokenizer = BertTokenizer(str(vocab))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(SPECIAL + POSITIVE + NEGATIVE + NEUTRAL),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=num_labels,
    )
    model = BertForSequenceClassification(config) if with_head else BertModel(config)
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory
