"""The two workloads of the translation benchmark (issue 5), each an FP32 checkpoint directory
that every engine loads or converts, the sentences to translate, and how to build its INT8 model.

- ``shipped``: ``models/marian-en-es`` over the 1,000-sentence test set (real lengths, BLEU
  against the references); INT8 by kl-independent calibration on training sentences.
- ``base``: a transformer-base sized Marian (d_model 512, 6+6 layers, 8 heads, FFN 2048, shared
  32k BPE vocabulary) with random weights. Its end-of-sentence logit gets a -1e4 bias
  (``final_logits_bias``, which Hugging Face and CTranslate2 both apply), so no engine ever
  stops early: every sentence runs to the length limit ``max_new_tokens_for(source_tokens)``
  and every engine generates exactly the same number of tokens. The sources are training
  sentences of exactly ``source_tokens`` tokens. INT8 is dynamic (calibrating random weights
  measures nothing).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eightbit.config import DYNAMIC, QuantConfig
from eightbit.data.corpus import load_parallel_corpus
from eightbit.errors import EightbitError
from eightbit.evaluate.nmt import sample_calibration_sources
from eightbit.models.marian import (
    calibration_batches,
    calibration_run,
    max_new_tokens_for,
)
from eightbit.models.marian_build import (
    MarianArchitecture,
    build_model,
    train_sentencepiece,
    write_tokenizer_files,
)
from eightbit.training.seq2seq import export
from eightbit.transform import quantize

WORKLOADS = ("shipped", "base")
TRANSFORMER_BASE = MarianArchitecture(
    d_model=512,
    encoder_layers=6,
    decoder_layers=6,
    attention_heads=8,
    ffn_dim=2048,
    max_positions=256,
    dropout=0.0,
)
BASE_VOCAB = 32000
EOS_SUPPRESSION = -1e4


@dataclass(frozen=True)
class Workload:
    """What one benchmark model translates; ``forced_tokens`` is the exact number of tokens
    every sentence must get (``None``: real lengths, ended by the model's own EOS)."""

    name: str
    model_dir: Path
    sentences: list[str]
    references: list[str] | None
    int8_method: str
    description: str
    forced_tokens: int | None = None


def shipped_workload(model_dir: str | os.PathLike[str], test_size: int | None) -> Workload:
    """The shipped model over the test set (the first ``test_size`` pairs, default all)."""
    test = load_parallel_corpus("test")[:test_size]
    return Workload(
        name="shipped",
        model_dir=Path(model_dir),
        sentences=[source for source, _ in test],
        references=[reference for _, reference in test],
        int8_method="kl-independent",
        description=f"{model_dir} (d_model 256, 3+3 layers, 8k vocab), test set, real lengths",
    )


def base_workload(
    root: Path,
    sentences: int,
    source_tokens: int,
    arch: MarianArchitecture = TRANSFORMER_BASE,
    vocab_size: int = BASE_VOCAB,
) -> Workload:
    """Build the random checkpoint (transformer-base unless ``arch`` says otherwise) under
    ``root``; ``sentences`` training sources of exactly ``source_tokens`` tokens."""
    pairs = load_parallel_corpus("train")
    train = [source for source, _ in pairs]
    bilingual = [s for pair in pairs for s in pair]
    spm = train_sentencepiece(bilingual, root / "spm", vocab_size, model_type="bpe")
    tokenizer = write_tokenizer_files(spm, root / "tokenizer")
    if len(tokenizer) != vocab_size:
        raise EightbitError(f"the BPE vocabulary has {len(tokenizer)} ids; expected {vocab_size}")
    chosen = _sources_of_length(tokenizer, train, source_tokens, sentences)
    torch.manual_seed(0)
    model = build_model(vocab_size, arch).eval()
    with torch.no_grad():
        model.final_logits_bias[..., model.config.eos_token_id] = EOS_SUPPRESSION
    export(model, tokenizer, root / "model")
    forced = max_new_tokens_for(source_tokens, arch.max_positions)
    return Workload(
        name="base",
        model_dir=root / "model",
        sentences=chosen,
        references=None,
        int8_method=DYNAMIC,
        description=(
            f"random weights, d_model {arch.d_model}, {arch.encoder_layers}+{arch.decoder_layers}"
            f" layers, {arch.attention_heads} heads, FFN {arch.ffn_dim}, vocab {vocab_size}; "
            f"{source_tokens}-token sources, EOS suppressed: {forced} tokens each"
        ),
        forced_tokens=forced,
    )


def _sources_of_length(
    tokenizer: Any, candidates: list[str], length: int, count: int, chunk: int = 2000
) -> list[str]:
    """The first ``count`` of ``candidates`` that encode to exactly ``length`` tokens."""
    chosen: list[str] = []
    for start in range(0, len(candidates), chunk):
        part = candidates[start : start + chunk]
        ids = tokenizer(part)["input_ids"]
        chosen += [text for text, row in zip(part, ids, strict=True) if len(row) == length]
        if len(chosen) >= count:
            return chosen[:count]
    raise EightbitError(
        f"only {len(chosen)} training sentences have {length} tokens; expected {count} "
        "(choose another --base-source-tokens)"
    )


def int8_model(
    workload: Workload,
    model: nn.Module,
    tokenizer: Any,
    calibration_size: int,
    backend: str = "auto",
    progress: bool = True,
) -> nn.Module:
    """The workload's INT8 model: calibrated on training sentences, or dynamic."""
    if workload.int8_method == DYNAMIC:
        return quantize(model, None, QuantConfig(method=DYNAMIC, backend=backend))
    train = load_parallel_corpus("train")
    sources = sample_calibration_sources(train, calibration_size, seed=0)
    batches = calibration_batches(model, tokenizer, sources, progress=progress)
    config = QuantConfig(method=workload.int8_method, backend=backend)
    return quantize(model, batches, config, run=calibration_run, progress=progress)
