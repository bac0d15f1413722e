"""Fine-tune a sequence classifier: FP32 fine-tuning and Q8BERT quantization-aware training.

Q8BERT (Zafrir et al. 2019) fine-tunes the pre-trained encoder on the task with fake quantization
in the forward pass; the loop here is the same for both: pass a plain model for FP32
fine-tuning, or ``eightbit.prepare_qat(model)`` for QAT (the fake-quant modules update their
EMA ranges and count steps for the delayed activation quantization while in training mode).
AdamW, linear warm-up then linear decay, gradient clipping, seeded batch order.

:func:`finetune_cached` keeps one FP32 fine-tuned checkpoint per (task, base model, settings,
training data) in a cache directory, in Hugging Face format, and reuses it when the hash matches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from eightbit.atomic import write_text_atomic
from eightbit.data.batching import pack_by_tokens
from eightbit.data.classification import LabeledSplit, load_task
from eightbit.errors import EightbitError
from eightbit.evaluate.metrics import accuracy
from eightbit.models.bert import (
    base_checkpoint,
    check_checkpoint,
    load_encoder_classifier,
    predict,
)
from eightbit.models.common import encode_batch
from eightbit.nn import FakeQuantLinear
from eightbit.progress import progress as progress_bar
from eightbit.training.distill import DistillConfig, distillation_loss

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
CACHE_FILE = "eightbit-finetune.json"
# settings that do not change the trained weights stay out of the cache key
_NOT_IN_KEY = ("progress", "threads", "device", "log_every")


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run. ``warmup_ratio``: share of the steps with a linear warm-up;
    ``max_steps`` caps the run (tests, time slots); ``device``: ``auto`` uses a GPU if any."""

    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    clip_norm: float = 1.0
    max_length: int = 128
    max_steps: int | None = None
    seed: int = 0
    threads: int = 2
    device: str = "auto"
    log_every: int = 50
    progress: bool = True


DEFAULT_FINETUNE_CONFIG = FinetuneConfig()


def epoch_batches(
    lengths: Sequence[int], batch_size: int, epoch: int, seed: int
) -> list[list[int]]:
    """Batches of similar length; equal lengths mix differently in every (seeded) epoch."""
    rng = random.Random(seed * 1000 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    packed = pack_by_tokens([lengths[i] for i in order], batch_size * max(lengths), batch_size)
    batches = [[order[i] for i in batch] for batch in packed]
    rng.shuffle(batches)
    return batches


def linear_schedule(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: 0 -> 1 over ``warmup`` steps, then linearly down to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _optimizer(model: nn.Module, config: FinetuneConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and LayerNorm weights (BERT's recipe)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.learning_rate)


@contextmanager
def ranges_frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, fake-quant layers use their activation ranges without updating them.

    Q8BERT fixes the learned EMA ranges at inference; a fake-quant layer otherwise keeps
    observing in eval mode too, so evaluating would move the ranges (and leak dev data).
    """
    layers = [m for m in model.modules() if isinstance(m, FakeQuantLinear)]
    before = [m.observe for m in layers]
    for layer in layers:
        layer.observe = False
    try:
        yield model
    finally:
        for layer, observe in zip(layers, before, strict=True):
            layer.observe = observe


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train_classifier(
    model: nn.Module,
    tokenizer: Any,
    train: LabeledSplit,
    config: FinetuneConfig = DEFAULT_FINETUNE_CONFIG,
    dev: LabeledSplit | None = None,
    teacher: Tensor | None = None,
    distill: DistillConfig | None = None,
) -> nn.Module:
    """Fine-tune ``model`` in place on ``train``; returns it in eval mode, on the CPU.

    With ``dev``, its accuracy is logged after every epoch. With ``teacher`` (logits per
    training text, in order: :func:`eightbit.models.bert.predict_logits` of the teacher) the loss is
    :func:`~eightbit.training.distill.distillation_loss` with ``distill`` (default settings
    when None) instead of the labels' cross-entropy.
    """
    if not train.texts:
        raise EightbitError("the training set is empty; expected labeled texts")
    if teacher is not None and teacher.shape[0] != len(train.texts):
        raise EightbitError(
            f"{teacher.shape[0]} teacher logits for {len(train.texts)} training texts"
        )
    if teacher is not None and distill is None:
        distill = DistillConfig()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        _train(model, tokenizer, train, config, dev, teacher, distill)
    finally:
        torch.set_num_threads(threads)
    return model.cpu().eval()


def _train(
    model: nn.Module,
    tokenizer: Any,
    train: LabeledSplit,
    config: FinetuneConfig,
    dev: LabeledSplit | None,
    teacher: Tensor | None = None,
    distill: DistillConfig | None = None,
) -> None:
    torch.manual_seed(config.seed)
    device = _device(config.device)
    model.to(device).train()
    lengths = [
        len(ids)
        for ids in tokenizer(list(train.texts), truncation=True, max_length=config.max_length)[
            "input_ids"
        ]
    ]
    steps_per_epoch = len(epoch_batches(lengths, config.batch_size, 0, config.seed))
    total = config.epochs * steps_per_epoch
    total = min(total, config.max_steps) if config.max_steps else total
    warmup = max(1, round(config.warmup_ratio * total))
    optimizer = _optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: linear_schedule(step, warmup, total)
    )
    labels = torch.tensor(train.labels)
    step = 0
    for epoch in range(config.epochs):
        batches = epoch_batches(lengths, config.batch_size, epoch, config.seed)
        for batch in progress_bar(batches, f"epoch {epoch}", "batch", config.progress):
            if step >= total:
                break
            enc = encode_batch(tokenizer, [train.texts[i] for i in batch], config.max_length)
            enc = {k: v.to(device) for k, v in enc.items()}
            if teacher is None or distill is None:
                loss = model(**enc, labels=labels[batch].to(device)).loss
            else:
                loss = distillation_loss(
                    model(**enc).logits,
                    teacher[batch].to(device),
                    labels[batch].to(device),
                    distill,
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            if step % config.log_every == 0:
                log.info(
                    "step %d/%d: loss %.4f, lr %.2e",
                    step,
                    total,
                    loss.item(),
                    scheduler.get_last_lr()[0],
                )
        if dev is not None and dev.texts:
            _log_dev(model, tokenizer, dev, config, epoch)
            model.train()
        if step >= total:
            break


def _log_dev(
    model: nn.Module, tokenizer: Any, dev: LabeledSplit, config: FinetuneConfig, epoch: int
) -> float:
    model.eval()
    with ranges_frozen(model):
        predictions = predict(
            model, tokenizer, dev.texts, config.batch_size, config.max_length, progress=False
        )
    score = accuracy(predictions, dev.labels)
    log.info("epoch %d: dev accuracy %.4f", epoch, score)
    return score


def weights_fingerprint(checkpoint: Path) -> str:
    """SHA-256 of a checkpoint directory's ``model.safetensors``."""
    digest = hashlib.sha256()
    with (checkpoint / "model.safetensors").open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(
    task: str, base_model: Path, config: FinetuneConfig, train: LabeledSplit
) -> dict[str, Any]:
    """What defines a fine-tuned checkpoint: task, base weights, settings and training data."""
    return {
        "format": CACHE_FORMAT,
        "task": task,
        "base_model_weights": weights_fingerprint(base_model),
        "settings": training_settings(config),
        "train_data": data_fingerprint(train),
    }


def data_fingerprint(data: LabeledSplit) -> str:
    """SHA-256 of the texts, labels and label names."""
    payload = json.dumps([data.texts, data.labels, data.label_names]).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()


def training_settings(config: FinetuneConfig) -> dict[str, Any]:
    """The settings that shape the trained weights (not threads, device, logging)."""
    return {k: v for k, v in asdict(config).items() if k not in _NOT_IN_KEY}


def key_hash(key: dict[str, Any]) -> str:
    """SHA-256 of a cache key (JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()


def new_classifier(
    base_model: str | os.PathLike[str] | None,
    label_names: Sequence[str],
    seed: int | None = None,
) -> tuple[nn.Module, Any]:
    """A classifier to fine-tune: the pre-trained encoder ``base_model`` (None: MiniLM) with a
    new head for ``label_names``, named in its config. ``seed`` seeds the head's initial weights
    (None: torch's current random state)."""
    if seed is not None:
        torch.manual_seed(seed)
    model, tokenizer = load_encoder_classifier(base_model, len(label_names))
    model.config.id2label = dict(enumerate(label_names))
    model.config.label2id = {name: i for i, name in enumerate(label_names)}
    return model, tokenizer


def finetune_cached(
    task: str,
    cache_dir: str | os.PathLike[str],
    base_model: str | os.PathLike[str] | None = None,
    config: FinetuneConfig = DEFAULT_FINETUNE_CONFIG,
    train: LabeledSplit | None = None,
    dev: LabeledSplit | None = None,
) -> tuple[nn.Module, Any, Path]:
    """The FP32 classifier fine-tuned on ``task``: from the cache when its key matches, else
    trained (``base_model`` default: MiniLM) and saved there in Hugging Face format.

    ``train`` defaults to the task's training split, and then ``dev`` to its dev split
    (:func:`eightbit.data.classification.load_task`); ``dev`` only logs accuracy per epoch.
    Returns the model, its tokenizer and the checkpoint directory.
    """
    from eightbit.training.seq2seq import export

    if train is None:
        train = load_task(task, "train")
        dev = dev if dev is not None else load_task(task, "dev")
    base = base_checkpoint(base_model)
    check_checkpoint(base)
    key = cache_key(task, base, config, train)
    digest = key_hash(key)
    directory = Path(cache_dir) / f"{task}-{digest[:16]}"
    meta_path = directory / CACHE_FILE
    if meta_path.is_file() and json.loads(meta_path.read_text()).get("hash") == digest:
        log.info("reusing the fine-tuned %s classifier in %s", task, directory)
        model, tokenizer = load_encoder_classifier(directory, len(train.label_names))
        return model, tokenizer, directory
    log.info("fine-tuning %s from %s (cache: %s)", task, base, directory)
    model, tokenizer = new_classifier(base, train.label_names)
    train_classifier(model, tokenizer, train, config, dev)
    export(model, tokenizer, directory)
    # the key file goes last: a directory without it is an unfinished run, trained again
    write_text_atomic(meta_path, json.dumps({"hash": digest, **key}, indent=1) + "\n")
    return model, tokenizer, directory
