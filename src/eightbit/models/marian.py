"""Adapter for Marian encoder-decoder translation models (OPUS-MT family, Hugging Face format).

Load -> validate -> calibrate -> translate. Calibration observes encoder and decoder activations
on the model's own greedy translations (the decoder inputs of real decoding), teacher-forced in
one pass, with source and target padding masked out of the statistics.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from eightbit.data.batching import pack_by_tokens, restore_order
from eightbit.data.parallel import (
    ForkedPool,
    check_worker_kind,
    check_workers,
    default_workers,
    map_in_workers,
    uses_processes,
)
from eightbit.errors import EightbitError
from eightbit.models.common import (
    ModelLoadError,
    check_tokenizer_fits,
    load_quantized_with_tokenizer,
    save_with_tokenizer,
)
from eightbit.nn import observation_mask
from eightbit.progress import progress as progress_bar

log = logging.getLogger(__name__)


# sinusoidal position tables: rebuilt from the config, so never stored
DERIVED_TENSORS = ("*embed_positions.weight",)


def load_marian(path: str | os.PathLike[str]) -> tuple[nn.Module, Any]:
    """FP32 ``MarianMTModel`` and ``MarianTokenizer`` from a local directory (never a hub)."""
    from transformers import MarianMTModel, MarianTokenizer

    directory = Path(path)
    if not directory.is_dir():
        raise ModelLoadError(f"{directory}: not a directory; expected a Marian checkpoint")
    missing = [
        f
        for f in ("config.json", "source.spm", "target.spm", "vocab.json")
        if not (directory / f).is_file()
    ]
    if missing:
        raise ModelLoadError(
            f"{directory}: missing {', '.join(missing)}; expected a Marian "
            "checkpoint with its tokenizer"
        )
    try:
        tokenizer = MarianTokenizer.from_pretrained(str(directory), local_files_only=True)
        model = MarianMTModel.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError, RuntimeError) as err:  # RuntimeError: a corrupt .spm file
        raise ModelLoadError(f"{directory}: cannot load the model ({err})") from None
    check_tokenizer_fits(tokenizer, model, directory)
    return model.eval(), tokenizer


def load_translation_model(path: str | os.PathLike[str]) -> tuple[nn.Module, Any]:
    """An FP32 Marian checkpoint or an eightbit INT8 directory, with its tokenizer."""
    from eightbit.io import METADATA_FILE

    directory = Path(path)
    if not (directory / METADATA_FILE).is_file():
        return load_marian(directory)
    from transformers import MarianTokenizer

    return load_quantized_with_tokenizer(directory, MarianTokenizer)


def save_translation_model(
    model: nn.Module,
    tokenizer: Any,
    path: str | os.PathLike[str],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save an INT8 Marian model with its tokenizer, atomically."""
    return save_with_tokenizer(model, tokenizer, path, extra, DERIVED_TENSORS)


@dataclass(frozen=True)
class Translation:
    text: str
    hit_length_limit: bool  # ran to the limit without emitting end-of-sentence


def max_new_tokens_for(source_length: int, max_positions: int) -> int:
    """Length limit for a batch: generous (2x + 10) but within the model's positions."""
    return max(1, min(2 * source_length + 10, max_positions - 1))


BATCH_TOKENS = 3072  # greedy (measured with forked workers; 4096 was best with threads)
BEAM_BATCH_TOKENS = 2048  # beam search: each sentence is `beam` decoder rows (measured, beam 4)
MAX_SENTENCES = 64  # per batch, whatever the beam (measured with the budgets above)


def default_batch_tokens(beam: int) -> int:
    """The token budget per batch :func:`translate` packs by default (measured on the shipped
    model, README "Batching defaults"): smaller for beam search, whose rows are beams."""
    return BATCH_TOKENS if beam == 1 else BEAM_BATCH_TOKENS


def token_ids(tokenizer: Any, sentences: Sequence[str], max_positions: int) -> list[list[int]]:
    """Every sentence's token ids, truncated to ``max_positions`` (as the model sees them)."""
    return tokenizer(list(sentences), truncation=True, max_length=max_positions)["input_ids"]


def padded(tokenizer: Any, rows: Sequence[list[int]]) -> dict[str, Tensor]:
    """The model inputs of one batch of token ids: ``input_ids`` and ``attention_mask``, padded."""
    return dict(tokenizer.pad({"input_ids": list(rows)}, return_tensors="pt"))


def tokenized_batches(
    tokenizer: Any,
    sentences: Sequence[str],
    max_positions: int,
    batch_tokens: int,
    max_sentences: int | None,
) -> tuple[list[list[int]], list[list[int]]]:
    """Every sentence's :func:`token_ids` and the length-sorted, token-packed batches of
    sentence indices :func:`translate` decodes."""
    ids = token_ids(tokenizer, sentences, max_positions)
    return ids, pack_by_tokens([len(row) for row in ids], batch_tokens, max_sentences)


def _encoded_batches(
    tokenizer: Any,
    sentences: Sequence[str],
    max_positions: int,
    batch_tokens: int,
    max_sentences: int | None,
) -> tuple[list[list[int]], list[dict[str, Tensor]]]:
    """:func:`tokenized_batches` and their padded model inputs, from one tokenizer pass (as
    ``encode_batch`` would give each batch)."""
    ids, batches = tokenized_batches(
        tokenizer, sentences, max_positions, batch_tokens, max_sentences
    )
    return batches, [padded(tokenizer, [ids[i] for i in batch]) for batch in batches]


ENGINES = ("eightbit", "hf")


class EngineChoiceError(EightbitError):
    """An unknown decoding engine was asked for."""


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise EngineChoiceError(f"engine: expected one of {', '.join(ENGINES)}, got {engine!r}")


def batch_generator(
    model: nn.Module, engine: str
) -> Callable[[dict[str, Tensor], int, int], Tensor]:
    """``generate(batch, beam, max_new_tokens) -> ids`` with ``engine`` ("eightbit" or "hf")."""
    _check_engine(engine)
    if engine == "hf":
        return lambda batch, beam, limit: generate_batch(model, batch, beam, limit)
    from eightbit.engine import build_plan, generate

    plan = build_plan(model)
    return lambda batch, beam, limit: generate(plan, batch, beam, limit)


def generate_batch(
    model: nn.Module, batch: dict[str, Tensor], beam: int, max_new_tokens: int
) -> Tensor:
    """Token ids (batch, 1 + generated) from HF ``generate`` with its KV cache.

    ``forced_eos_token_id`` is switched off: forcing EOS at the length limit would hide the
    failure this toolkit must show (a decoder that never emits EOS on its own).
    """
    from eightbit.engine.hf_attention import ensure_registered

    ensure_registered(model.config)  # e.g. a model unpickled in a fresh process
    with torch.inference_mode():
        return model.generate(
            **batch,
            num_beams=beam,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            early_stopping=True if beam > 1 else None,
            forced_eos_token_id=None,
        )


class Translator:
    """Translate sentences with one model over many calls, e.g. a service or a benchmark.

    Each call tokenizes, sorts the sentences by length, packs them into token-budget batches
    and decodes the batches on ``workers`` parallel workers (default one per intra-op thread),
    which also detokenize; the output is in input order. ``engine``: "eightbit" (its decoding
    plan is built once, here) or "hf" (``generate``). ``worker_kind``: "process" (forked
    workers, each with its own interpreter), "thread", or "auto" (processes once a call has
    enough batches to pay for the forks: :func:`eightbit.data.parallel.uses_processes`).

    Forked workers start at the first call that uses them and stay until :meth:`close` (or the
    end of a ``with`` block), so later calls skip the forks (45-85 ms each on 2 cores) and
    tokenize in the workers too. Like the decoding plan, they hold the model as it was when
    they started: make a new ``Translator`` after changing the model. A worker that dies
    (killed, out of memory) fails its call with
    :class:`~eightbit.data.parallel.WorkerDiedError`; the next call forks new workers. One call
    at a time: a ``Translator`` is not meant to be shared between threads.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        engine: str = "eightbit",
        workers: int | None = None,
        worker_kind: str = "auto",
    ) -> None:
        check_worker_kind(worker_kind)
        if workers is not None:
            check_workers(workers)
        self._work = _TranslationWork(
            batch_generator(model, engine),
            tokenizer,
            model.config.max_position_embeddings,
            model.config.eos_token_id,
        )
        self._workers = workers
        self._kind = worker_kind
        self._pool: ForkedPool[tuple[str, Any], Any] | None = None
        self._close_pool: weakref.finalize | None = None

    def translate(
        self,
        sentences: Sequence[str],
        *,
        beam: int = 1,
        batch_tokens: int | None = None,
        max_sentences: int | None = MAX_SENTENCES,
        progress: bool = True,
    ) -> list[Translation]:
        """Translations of ``sentences``, in their order. ``batch_tokens``: default
        :func:`default_batch_tokens` of ``beam``."""
        if batch_tokens is None:
            batch_tokens = default_batch_tokens(beam)
        if self._pool is not None and self._pool.closed:  # a worker died: start afresh
            self.close()
        ids = self._token_ids(sentences)
        batches = pack_by_tokens([len(row) for row in ids], batch_tokens, max_sentences)
        tasks = [("decode", ([ids[i] for i in batch], beam)) for batch in batches]
        results = self._map(tasks)
        outputs = progress_bar(results, "translating", "batch", progress, total=len(batches))
        return restore_order(batches, list(outputs))

    def close(self) -> None:
        """Stop the worker processes, if any started; calls after this fork new ones."""
        if self._close_pool is not None:
            self._close_pool()
        self._pool = self._close_pool = None

    def __enter__(self) -> Translator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _token_ids(self, sentences: Sequence[str]) -> list[list[int]]:
        if self._pool is None:  # no workers yet: tokenized here, in one thread
            return self._work.tokenize(sentences)
        share = -(-len(sentences) // self._pool.workers)
        chunks = [sentences[i : i + share] for i in range(0, len(sentences), share)]
        return [row for rows in self._pool.map([("tokenize", c) for c in chunks]) for row in rows]

    def _map(self, tasks: list[tuple[str, Any]]) -> Iterator[list[Translation]]:
        if self._pool is None:
            workers = self._workers or default_workers(len(tasks))
            if not uses_processes(self._kind, len(tasks), workers):
                return map_in_workers(self._work, tasks, workers, kind="thread")
            # sized for later calls too, not this call's batch count: one per thread by default
            workers = self._workers or torch.get_num_threads()
            threads = max(1, torch.get_num_threads() // workers)
            self._pool = ForkedPool(self._work, workers, threads)
            self._close_pool = weakref.finalize(self, self._pool.close)
        return self._pool.map(tasks)


@dataclass(frozen=True)
class _TranslationWork:
    """A :class:`Translator` worker's job: ``("tokenize", sentences)`` -> their token ids, or
    ``("decode", (token ids of a batch, beam))`` -> the batch's translations."""

    generate: Callable[[dict[str, Tensor], int, int], Tensor]
    tokenizer: Any
    max_positions: int
    eos: int

    def __call__(self, task: tuple[str, Any]) -> Any:
        kind, payload = task
        return self.tokenize(payload) if kind == "tokenize" else self.decode(*payload)

    def tokenize(self, sentences: Sequence[str]) -> list[list[int]]:
        return token_ids(self.tokenizer, sentences, self.max_positions)

    def decode(self, rows: list[list[int]], beam: int) -> list[Translation]:
        batch = padded(self.tokenizer, rows)
        limit = max_new_tokens_for(batch["input_ids"].shape[1], self.max_positions)
        ids = self.generate(batch, beam, limit)
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        hit = [not bool((row[1:] == self.eos).any()) for row in ids]
        return [Translation(t.strip(), h) for t, h in zip(texts, hit, strict=True)]


def translate(
    model: nn.Module,
    tokenizer: Any,
    sentences: Sequence[str],
    *,
    beam: int = 1,
    batch_tokens: int | None = None,
    max_sentences: int | None = MAX_SENTENCES,
    engine: str = "eightbit",
    workers: int | None = None,
    worker_kind: str = "auto",
    progress: bool = True,
) -> list[Translation]:
    """Translate ``sentences`` once: a :class:`Translator` (see it for the options) for one
    call."""
    with Translator(
        model, tokenizer, engine=engine, workers=workers, worker_kind=worker_kind
    ) as translator:
        return translator.translate(
            sentences,
            beam=beam,
            batch_tokens=batch_tokens,
            max_sentences=max_sentences,
            progress=progress,
        )


def translate_lines(
    model: nn.Module, tokenizer: Any, lines: Sequence[str], **options: Any
) -> list[Translation]:
    """Translate the lines of a file: one output per line, an empty line stays empty.
    ``options`` go to :func:`translate` (beam, batching, engine, workers, progress).

    A line longer than the model's positions is truncated to fit, with a warning naming its
    (1-based) line number; its translation covers only the part the model could read.
    """
    max_positions = model.config.max_position_embeddings
    numbered = [(number, line) for number, line in enumerate(lines, 1) if line]
    if numbered:
        lengths = [len(ids) for ids in tokenizer([line for _, line in numbered])["input_ids"]]
        for (number, _), length in zip(numbered, lengths, strict=True):
            if length > max_positions:
                log.warning(
                    "line %d: %d tokens, more than the model's %d positions; truncated to fit",
                    number,
                    length,
                    max_positions,
                )
    return aligned_to_lines(
        lines, translate(model, tokenizer, [line for _, line in numbered], **options)
    )


def aligned_to_lines(
    lines: Sequence[str], translations: Sequence[Translation]
) -> list[Translation]:
    """One translation per line: ``translations`` (of the non-empty ``lines``, in order) in
    their places, an empty translation for each empty line."""
    done = iter(translations)
    return [next(done) if line else Translation("", False) for line in lines]


def calibration_batches(
    model: nn.Module,
    tokenizer: Any,
    sentences: Sequence[str],
    batch_tokens: int = 2048,
    progress: bool = True,
) -> list[dict[str, Tensor]]:
    """Calibration inputs for encoder and decoder: each source batch with the FP32 model's own
    greedy translation as decoder input (what the decoder sees in real decoding), and masks.

    Computed once and reused for every calibration method.
    """
    config = model.config
    batches = []
    generate = batch_generator(model, "eightbit")
    _, encoded = _encoded_batches(
        tokenizer, sentences, config.max_position_embeddings, batch_tokens, 64
    )
    with torch.inference_mode():
        for enc in progress_bar(encoded, "decoding calibration set", "batch", progress):
            limit = max_new_tokens_for(enc["input_ids"].shape[1], config.max_position_embeddings)
            decoded = generate(enc, 1, limit)
            target_mask = _target_mask(decoded, config.eos_token_id)
            if target_mask.shape == enc["attention_mask"].shape:  # keep the shapes distinct
                pad = torch.full((decoded.shape[0], 1), config.pad_token_id, dtype=decoded.dtype)
                decoded = torch.cat([decoded, pad], dim=1)
                target_mask = torch.cat([target_mask, torch.zeros_like(pad)], dim=1)
            batches.append(
                {**enc, "decoder_input_ids": decoded, "decoder_attention_mask": target_mask}
            )
    return batches


def calibration_run(model: nn.Module, batch: dict[str, Tensor]) -> None:
    """Observe one batch, teacher-forced, with source and target padding masked out."""
    with observation_mask(batch["attention_mask"], batch["decoder_attention_mask"]):
        model(**batch)


def _target_mask(decoded: Tensor, eos: int) -> Tensor:
    """1 for the start token and every token up to and including the first EOS."""
    is_eos = (decoded == eos).long()
    is_eos[:, 0] = 0  # the decoder start token may share an id with eos/pad
    after_eos = (torch.cumsum(is_eos, dim=1) - is_eos) > 0
    return (~after_eos).long()


def translation_text(translations: Sequence[Translation]) -> str:
    """Output text, one line per translation (line-aligned: see :func:`aligned_to_lines`)."""
    return "".join(t.text + "\n" for t in translations)
