"""The engine on the shipped model and real test sentences: the same tokens as ``generate``.

FP32: identical tokens, greedy (30 sentences) and beam 4 (20). INT8 (static, calibrated on a
small sample): the same translations, hence the same BLEU, as the INT8 model under ``generate``,
and identical tokens greedy and beam 4 with the native decode attention in both.
"""

from pathlib import Path

import pytest
import torch

from eightbit.config import QuantConfig
from eightbit.data.corpus import load_parallel_corpus
from eightbit.engine import build_plan, hf_attention
from eightbit.evaluate.metrics import translation_scores
from eightbit.evaluate.nmt import sample_calibration_sources
from eightbit.kernels import native
from eightbit.models.common import encode_batch
from eightbit.models.marian import (
    Translator,
    batch_generator,
    calibration_batches,
    calibration_run,
    generate_batch,
    load_marian,
    max_new_tokens_for,
    translate,
)
from eightbit.transform import quantize

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "marian-en-es"
SENTENCES = 30
BEAM_SENTENCES = 20  # beam 4 costs ~4x greedy: fewer sentences keep the suite quick
BATCH = 10


@pytest.fixture(scope="module")
def shipped():
    return load_marian(SHIPPED)


@pytest.fixture(scope="module")
def test_pairs():
    return load_parallel_corpus("test")[:SENTENCES]


@pytest.fixture(scope="module")
def shipped_int8(shipped):
    model, tokenizer = shipped
    sources = sample_calibration_sources(load_parallel_corpus("train"), 40, 0)
    calib = calibration_batches(model, tokenizer, sources, progress=False)
    return quantize(model, calib, QuantConfig(method="minmax"), run=calibration_run, progress=False)


def _encoded(tokenizer, sources):
    for start in range(0, len(sources), BATCH):
        batch = encode_batch(tokenizer, sources[start : start + BATCH], 256)
        yield batch, max_new_tokens_for(batch["input_ids"].shape[1], 256)


@pytest.mark.parametrize("beam", [1, 4])
def test_fp32_tokens_equal_generate(shipped, test_pairs, beam):
    model, tokenizer = shipped
    engine = batch_generator(model, "eightbit")
    pairs = test_pairs if beam == 1 else test_pairs[:BEAM_SENTENCES]
    for batch, limit in _encoded(tokenizer, [s for s, _ in pairs]):
        assert torch.equal(engine(batch, beam, limit), generate_batch(model, batch, beam, limit))


@pytest.mark.skipif(not native.is_available(), reason="native kernel unavailable")
@pytest.mark.parametrize("beam", [1, 4])
def test_int8_native_decode_attention_tokens_equal_generate(
    shipped, shipped_int8, test_pairs, beam
):
    _, tokenizer = shipped
    assert shipped_int8.config._attn_implementation == hf_attention.NAME
    plan = build_plan(shipped_int8)
    assert plan.native_attention
    engine = batch_generator(shipped_int8, "eightbit")
    pairs = test_pairs if beam == 1 else test_pairs[:BEAM_SENTENCES]
    for batch, limit in _encoded(tokenizer, [s for s, _ in pairs]):
        expected = generate_batch(shipped_int8, batch, beam, limit)
        assert torch.equal(engine(batch, beam, limit), expected)


def test_process_and_thread_workers_translate_alike(shipped, shipped_int8, test_pairs):
    _, tokenizer = shipped
    sources = [s for s, _ in test_pairs]
    options = {"batch_tokens": 200, "progress": False}  # several batches each
    with_kind = {
        kind: translate(shipped_int8, tokenizer, sources, worker_kind=kind, workers=2, **options)
        for kind in ("process", "thread")
    }
    assert with_kind["process"] == with_kind["thread"]
    assert len(with_kind["process"]) == len(sources)
    with Translator(shipped_int8, tokenizer, workers=2, worker_kind="process") as translator:
        kept = [translator.translate(sources, **options) for _ in range(2)]  # workers reused
    assert kept == [with_kind["thread"]] * 2


def test_int8_translations_and_bleu_equal_generate(shipped, shipped_int8, test_pairs):
    _, tokenizer = shipped
    int8 = shipped_int8
    by_engine = {
        engine: translate(
            int8, tokenizer, [s for s, _ in test_pairs], engine=engine, progress=False
        )
        for engine in ("eightbit", "hf")
    }
    assert by_engine["eightbit"] == by_engine["hf"]
    references = [r for _, r in test_pairs]
    bleu = {
        engine: translation_scores(
            [o.text for o in outs], references, [o.hit_length_limit for o in outs]
        ).bleu
        for engine, outs in by_engine.items()
    }
    assert bleu["eightbit"] == bleu["hf"] > 10.0
