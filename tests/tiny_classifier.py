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


def write_fine_tuned_tiny_bert(directory: Path, train: LabeledSplit | None = None) -> Path:
    """A tiny BERT classifier fine-tuned for a few seconds on ``train`` (default: 40 synthetic
    texts), saved with its head, label names and tokenizer like ``eightbit finetune`` does."""
    from eightbit.models.bert import load_encoder_classifier
    from eightbit.training.classifier import FinetuneConfig, train_classifier

    train = train or synthetic_split(40, seed=0)
    base = write_tiny_bert(directory.parent / f"{directory.name}-base")
    model, tokenizer = load_encoder_classifier(base, len(train.label_names))
    config = FinetuneConfig(
        epochs=20, batch_size=8, learning_rate=3e-3, max_length=16, threads=1, progress=False
    )
    train_classifier(model, tokenizer, train, config)
    model.config.id2label = dict(enumerate(train.label_names))
    model.config.label2id = {name: i for i, name in enumerate(train.label_names)}
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory
