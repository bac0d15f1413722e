"""The Marian adapter end to end on a tiny model built from a config and a local vocabulary."""

import gc
import json

import pytest
import torch

import eightbit
from eightbit.config import QuantConfig
from eightbit.data.parallel import can_fork
from eightbit.evaluate.nmt import NmtEvalConfig, run_nmt_eval, write_reports
from eightbit.models.marian import (
    ModelLoadError,
    Translator,
    calibration_batches,
    calibration_run,
    load_marian,
    load_translation_model,
    save_translation_model,
    translate,
)
from eightbit.nn import QuantLinear
from tests.helpers import TINY_PAIRS as PAIRS
from tests.helpers import tiny_marian_dir

needs_fork = pytest.mark.skipif(not can_fork(), reason="this process cannot fork")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_marian_dir(tmp_path_factory.mktemp("marian"))


def test_quantize_save_load_translate(model_dir, tmp_path):
    model, tokenizer = load_marian(model_dir)
    calib = calibration_batches(model, tokenizer, [s for s, _ in PAIRS[:10]], progress=False)
    assert all(b["decoder_attention_mask"].shape != b["attention_mask"].shape for b in calib)
    int8 = eightbit.quantize(
        model, calib, QuantConfig(method="kl-independent"), run=calibration_run, progress=False
    )
    assert isinstance(int8.model.encoder.layers[0].fc1, QuantLinear)
    path = save_translation_model(int8, tokenizer, tmp_path / "int8")
    meta = json.loads((path / "eightbit.json").read_text())
    assert not any("embed_positions" in k for k in meta["tensors"]), "rebuilt, not stored"
    loaded, loaded_tok = load_translation_model(path)
    sources = [s for s, _ in PAIRS[:6]]
    first = translate(int8, tokenizer, sources, progress=False)
    again = translate(loaded, loaded_tok, sources, progress=False)
    assert [t.text for t in first] == [t.text for t in again]


def test_untrained_model_runs_to_the_length_limit_and_is_flagged(model_dir):
    model, tokenizer = load_marian(model_dir)
    outputs = translate(model, tokenizer, [s for s, _ in PAIRS[:8]], progress=False)
    # a random decoder rarely emits EOS: the flag must see it (forced EOS is switched off)
    assert sum(o.hit_length_limit for o in outputs) >= 6


def test_demo_pipeline_writes_reports(model_dir, tmp_path):
    config = NmtEvalConfig(
        model_dir=model_dir,
        methods=("minmax", "dynamic"),
        calibration_size=6,
        test_size=5,
        progress=False,
    )
    report = run_nmt_eval(config, PAIRS, PAIRS[-5:])
    assert [r["method"] for r in report["int8"]] == ["minmax", "dynamic"]
    assert report["best"] == "minmax"
    for r in report["int8"]:
        assert {"bleu", "chrf", "eos_failure_rate", "size_mb"} <= set(r)
        assert r["size_mb"] < report["fp32"]["size_mb"]
    paths = write_reports(report, tmp_path / "reports")
    assert all(p.stat().st_size > 0 for p in paths)
    assert paths[-1].read_bytes()[:4] == b"\x89PNG"


def test_tokenizer_that_does_not_fit_the_model_is_rejected(model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    vocab = json.loads((broken / "vocab.json").read_text())
    vocab.update({f"extra{i}": len(vocab) + i for i in range(50)})
    (broken / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(ModelLoadError, match="do not belong together"):
        load_marian(broken)


@pytest.mark.parametrize(("beam", "budget"), [(1, 3072), (2, 2048)])
def test_translate_packs_by_the_default_budget_of_its_beam(model_dir, monkeypatch, beam, budget):
    from eightbit.models import marian

    seen = []
    pack = marian.pack_by_tokens
    monkeypatch.setattr(
        marian,
        "pack_by_tokens",
        lambda lengths, tokens, sentences: seen.append(tokens) or pack(lengths, tokens, sentences),
    )
    model, tokenizer = load_marian(model_dir)
    translate(model, tokenizer, [s for s, _ in PAIRS[:2]], beam=beam, progress=False)
    assert seen == [budget]


def test_one_tokenizer_pass_gives_each_batch_what_encode_batch_gives(model_dir):
    from eightbit.models.common import encode_batch
    from eightbit.models.marian import _encoded_batches

    model, tokenizer = load_marian(model_dir)
    limit = model.config.max_position_embeddings
    sources = [s for s, _ in PAIRS[:9]] + [" ".join(s for s, _ in PAIRS) * 3]  # one truncated
    batches, encoded = _encoded_batches(tokenizer, sources, limit, 64, 3)
    assert sorted(i for batch in batches for i in batch) == list(range(len(sources)))
    assert max(e["input_ids"].shape[1] for e in encoded) == limit
    for batch, got in zip(batches, encoded, strict=True):
        expected = encode_batch(tokenizer, [sources[i] for i in batch], limit)
        assert got.keys() == expected.keys()
        for key in expected:
            assert got[key].dtype == expected[key].dtype
            assert torch.equal(got[key], expected[key]), key


@pytest.fixture
def forks(monkeypatch):
    """Counts the worker pools :class:`Translator` forks."""
    from eightbit.data.parallel import ForkedPool
    from eightbit.models import marian

    made = []

    class Counted(ForkedPool):
        def __init__(self, *args, **kwargs):
            made.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(marian, "ForkedPool", Counted)
    return made


@needs_fork
def test_a_translator_forks_once_and_translates_as_translate_does(model_dir, forks):
    model, tokenizer = load_marian(model_dir)
    sources = [s for s, _ in PAIRS] + ["", " ".join(s for s, _ in PAIRS) * 3]  # one truncated
    options = {"batch_tokens": 48, "progress": False}  # several batches per worker
    expected = translate(model, tokenizer, sources, worker_kind="thread", workers=2, **options)
    assert not forks
    with Translator(model, tokenizer, workers=2, worker_kind="process") as translator:
        first = translator.translate(sources, **options)  # tokenized here, then forks
        again = translator.translate(sources, **options)  # tokenized in the workers
        few = translator.translate(sources[:1], progress=False)
    assert len(forks) == 1
    assert first == again == expected
    assert few == expected[:1]


@needs_fork
def test_a_closed_or_dropped_translator_stops_its_workers(model_dir, forks):
    from eightbit.data import parallel

    model, tokenizer = load_marian(model_dir)
    sources = [s for s, _ in PAIRS[:4]]
    translator = Translator(model, tokenizer, workers=2, worker_kind="process")
    first = translator.translate(sources, progress=False)
    translator.close()
    assert not parallel._forked_fns
    assert translator.translate(sources, progress=False) == first  # new workers
    assert len(forks) == 2
    del translator
    gc.collect()
    assert not parallel._forked_fns


def test_auto_and_thread_translators_do_not_fork_for_few_batches(model_dir, forks):
    model, tokenizer = load_marian(model_dir)
    for kind in ("auto", "thread"):
        with Translator(model, tokenizer, workers=2, worker_kind=kind) as translator:
            translator.translate([s for s, _ in PAIRS[:4]], progress=False)
    assert not forks


@pytest.mark.parametrize(
    ("options", "message"),
    [({"worker_kind": "fiber"}, "worker kind"), ({"workers": 0}, "workers"),
     ({"engine": "onnx"}, "engine")],
)  # fmt: skip
def test_bad_translator_options_are_user_errors(model_dir, options, message):
    model, tokenizer = load_marian(model_dir)
    with pytest.raises(eightbit.EightbitError, match=message):
        Translator(model, tokenizer, **options)


@needs_fork
def test_a_translator_whose_worker_died_forks_new_workers_next_call(
    model_dir, forks, monkeypatch, tmp_path
):
    import os

    from eightbit.data.parallel import WorkerDiedError
    from eightbit.models import marian

    flag = tmp_path / "died"
    real = marian.batch_generator

    def dies_once(model, engine):
        generate = real(model, engine)

        def run(batch, beam, limit):
            if not flag.exists():
                flag.touch()
                os._exit(1)  # the first worker to decode, once
            return generate(batch, beam, limit)

        return run

    monkeypatch.setattr(marian, "batch_generator", dies_once)
    model, tokenizer = load_marian(model_dir)
    sources = [s for s, _ in PAIRS[:4]]
    with Translator(model, tokenizer, workers=2, worker_kind="process") as translator:
        with pytest.raises(WorkerDiedError, match="died"):
            translator.translate(sources, progress=False)
        again = translator.translate(sources, progress=False)
    assert len(forks) == 2
    assert again == translate(model, tokenizer, sources, worker_kind="thread", progress=False)


@needs_fork
def test_a_translators_workers_are_one_per_thread_whatever_its_first_call(model_dir, forks):
    from eightbit.data.parallel import intra_op_threads

    model, tokenizer = load_marian(model_dir)
    sources = [s for s, _ in PAIRS[:4]]
    with intra_op_threads(3), Translator(model, tokenizer, worker_kind="process") as translator:
        translator.translate(sources, batch_tokens=40, progress=False)  # 2 batches
    assert [pool.workers for pool in forks] == [3]
