"""CTranslate2 as the peer translation engine (the ``bench`` extra; not a runtime dependency).

The model is converted from the same Hugging Face checkpoint directory the other engines load,
with ``ctranslate2.converters.TransformersConverter`` (offline, FP32 weights); the precision is
chosen when loading (``compute_type`` ``float32`` or ``int8``), as CTranslate2 recommends.
Inputs go through the same tokenizer and the same length-sorted, token-packed batches as
:func:`eightbit.models.marian.translate`, with the same length limit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from eightbit.data.batching import restore_order
from eightbit.data.parallel import default_workers, intra_op_threads
from eightbit.errors import EightbitError
from eightbit.models.marian import (
    MAX_SENTENCES,
    Translation,
    default_batch_tokens,
    max_new_tokens_for,
    tokenized_batches,
)

COMPUTE_TYPES = {"fp32": "float32", "int8": "int8"}


class MissingBenchDependency(EightbitError):
    """An optional benchmark package (the ``bench`` extra) is not installed."""


def import_ctranslate2() -> ModuleType:
    """The ``ctranslate2`` module, or a one-line error naming the extra to install."""
    try:
        import ctranslate2
    except ImportError:
        raise MissingBenchDependency(
            "ctranslate2 is not installed; install the benchmark extra "
            "(pip install 'eightbit[bench]')"
        ) from None
    return ctranslate2


def _pad_start_marian_loader(ctranslate2: ModuleType) -> Any:
    """CTranslate2's Marian loader, changed to start decoding from the ``<pad>`` embedding.

    Hugging Face Marian feeds ``<pad>`` as the decoder start token. The stock loader drops the
    ``<pad>`` row and starts from a zero vector, which is the same only when that row is zero
    (true of Marian-trained OPUS-MT models). With tied embeddings trained in PyTorch the output
    projection's gradient makes it non-zero (the shipped model's is), so keep the row and start
    from it; :func:`ct2_translate` forbids generating ``<pad>``, as ``generate`` does.
    """
    from ctranslate2.converters.transformers import BartLoader, MarianMTLoader

    class PadStartMarianLoader(MarianMTLoader):
        def get_model_spec(self, model: Any) -> Any:
            model.config.normalize_before = False
            model.config.normalize_embedding = False
            return BartLoader.get_model_spec(self, model)

        def set_decoder(self, spec: Any, decoder: Any) -> None:
            BartLoader.set_decoder(self, spec, decoder)

        def get_vocabulary(self, model: Any, tokenizer: Any) -> list[str]:
            return BartLoader.get_vocabulary(self, model, tokenizer)

        def set_config(self, config: Any, model: Any, tokenizer: Any) -> None:
            super().set_config(config, model, tokenizer)
            config.decoder_start_token = tokenizer.pad_token

    return PadStartMarianLoader()


def convert_checkpoint(model_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """Convert a Hugging Face Marian checkpoint directory to a CTranslate2 model in ``out_dir``
    (FP32 weights; the precision is chosen at load time)."""
    ctranslate2 = import_ctranslate2()
    from ctranslate2.converters import transformers as ct2_transformers

    loaders = ct2_transformers._MODEL_LOADERS
    stock = loaders["MarianConfig"]
    loaders["MarianConfig"] = _pad_start_marian_loader(ctranslate2)
    try:
        converter = ctranslate2.converters.TransformersConverter(str(model_dir))
        return Path(converter.convert(str(out_dir), force=True))
    finally:
        loaders["MarianConfig"] = stock


def load_translator(
    ct2_dir: str | os.PathLike[str], precision: str, threads: int, workers: int | None = None
) -> Any:
    """A CPU ``ctranslate2.Translator`` with ``workers`` replicas (``inter_threads``; default
    one per thread, as :func:`eightbit.data.parallel.default_workers`) sharing ``threads``
    intra-op threads equally: the same split as the eightbit engine's workers."""
    if precision not in COMPUTE_TYPES:
        raise ValueError(f"precision must be one of {', '.join(COMPUTE_TYPES)}, got {precision!r}")
    ctranslate2 = import_ctranslate2()
    replicas = workers or default_workers(threads, threads)
    # the constructor sets the calling thread's OpenMP thread count to intra_threads, which is
    # also PyTorch's intra-op count: left at 1, every later eightbit or HF run in this process
    # would get one worker (one core) by default
    with intra_op_threads(torch.get_num_threads()):
        return ctranslate2.Translator(
            str(ct2_dir),
            device="cpu",
            compute_type=COMPUTE_TYPES[precision],
            intra_threads=max(1, threads // replicas),
            inter_threads=replicas,
        )


def ct2_translate(
    translator: Any,
    tokenizer: Any,
    sentences: Sequence[str],
    *,
    beam: int,
    max_positions: int,
    batch_tokens: int | None = None,
    max_sentences: int | None = MAX_SENTENCES,
) -> list[Translation]:
    """Translate with CTranslate2; ``hit_length_limit`` means no end-of-sentence was produced.

    Every batch is submitted at once (``asynchronous``), so the translator's replicas decode
    batches side by side, as the eightbit engine's workers do."""
    eos = tokenizer.eos_token
    budget = batch_tokens or default_batch_tokens(beam)
    encoded, batches = tokenized_batches(  # the batches translate() makes
        tokenizer, sentences, max_positions, budget, max_sentences
    )
    pending = []
    for batch in batches:
        source = [tokenizer.convert_ids_to_tokens(encoded[i]) for i in batch]
        limit = max_new_tokens_for(max(len(tokens) for tokens in source), max_positions)
        pending.append(
            translator.translate_batch(
                source,
                beam_size=beam,
                max_decoding_length=limit,
                return_end_token=True,
                suppress_sequences=[[tokenizer.pad_token]],
                asynchronous=True,
            )
        )
    outputs = []
    for results in pending:
        hypotheses = [result.result().hypotheses[0] for result in results]
        ids = [tokenizer.convert_tokens_to_ids(tokens) for tokens in hypotheses]
        texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
        outputs.append(
            [
                Translation(text.strip(), not tokens or tokens[-1] != eos)
                for text, tokens in zip(texts, hypotheses, strict=True)
            ]
        )
    return restore_order(batches, outputs)
