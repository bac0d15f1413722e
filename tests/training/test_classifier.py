"""Classifier fine-tuning loop (FP32 and QAT) and the fine-tuned checkpoint cache, tiny BERT."""

import json
import logging

import pytest

import eightbit
from eightbit import QATConfig
from eightbit.errors import EightbitError
from eightbit.evaluate.metrics import accuracy
from eightbit.models.bert import load_encoder_classifier, predict
from eightbit.nn import FakeQuantLinear
from eightbit.training import classifier as clf
from tests.tiny_classifier import synthetic_split, write_tiny_bert

FAST = clf.FinetuneConfig(
    epochs=20,
    batch_size=8,
    learning_rate=3e-3,
    max_length=16,
    threads=1,
    progress=False,
    log_every=5,
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


def test_schedule_warms_up_then_decays_to_zero():
    factors = [clf.linear_schedule(s, 2, 6) for s in range(7)]
    assert factors == [0.5, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]


def test_epoch_batches_cover_everything_once_and_depend_on_seed_and_epoch():
    lengths = [3, 5, 5, 5, 5, 7, 2, 2, 9, 4]
    batches = clf.epoch_batches(lengths, 3, epoch=0, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(10))
    assert all(len(b) <= 3 for b in batches)
    assert batches == clf.epoch_batches(lengths, 3, epoch=0, seed=1)
    assert batches != clf.epoch_batches(lengths, 3, epoch=1, seed=1)


def test_fp32_finetuning_learns_the_synthetic_task(tiny_dir, caplog):
    train, dev = synthetic_split(40, seed=0), synthetic_split(40, seed=1)
    model, tokenizer = load_encoder_classifier(tiny_dir, 2)
    before = accuracy(predict(model, tokenizer, dev.texts, progress=False), dev.labels)
    with caplog.at_level(logging.INFO, logger="eightbit.training.classifier"):
        trained = clf.train_classifier(model, tokenizer, train, FAST, dev)
    assert trained is model and not trained.training
    after = accuracy(predict(trained, tokenizer, dev.texts, progress=False), dev.labels)
    assert after >= 0.9 and after > before
    assert "dev accuracy" in caplog.text and "step 5/100" in caplog.text


def test_same_loop_runs_qat_and_converts(tiny_dir):
    train = synthetic_split(40, seed=0)
    model, tokenizer = load_encoder_classifier(tiny_dir, 2)
    qat = eightbit.prepare_qat(model, QATConfig(act_quant_delay=2))
    clf.train_classifier(
        qat, tokenizer, train, clf.FinetuneConfig(**{**FAST.__dict__, "epochs": 2})
    )
    layer = qat.bert.encoder.layer[0].output.dense
    assert isinstance(layer, FakeQuantLinear) and int(layer.steps) == 10
    int8 = eightbit.convert(qat)
    texts = list(train.texts[:8])
    assert predict(int8, tokenizer, texts, progress=False) == predict(
        qat, tokenizer, texts, progress=False
    )


def test_empty_training_set_is_a_clear_error(tiny_dir):
    model, tokenizer = load_encoder_classifier(tiny_dir, 2)
    empty = synthetic_split(0)
    with pytest.raises(EightbitError, match="training set is empty"):
        clf.train_classifier(model, tokenizer, empty, FAST)


def test_finetune_cached_trains_once_and_retrains_when_the_key_changes(tmp_path, tiny_dir):
    train, dev = synthetic_split(16), synthetic_split(4, seed=3)
    config = clf.FinetuneConfig(epochs=1, batch_size=8, max_length=16, threads=1, progress=False)
    model, tok, path = clf.finetune_cached("toy", tmp_path, tiny_dir, config, train, dev)
    meta = json.loads((path / clf.CACHE_FILE).read_text())
    assert meta["task"] == "toy" and meta["settings"]["epochs"] == 1
    assert "progress" not in meta["settings"]
    assert json.loads((path / "config.json").read_text())["id2label"] == {
        "0": "negative",
        "1": "positive",
    }
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    again, _, same = clf.finetune_cached(
        "toy", tmp_path, tiny_dir, clf.FinetuneConfig(**{**config.__dict__, "threads": 1}), train
    )
    assert same == path and (path / "model.safetensors").stat().st_mtime_ns == stamp
    texts = list(train.texts)
    assert predict(again, tok, texts, progress=False) == predict(model, tok, texts, progress=False)
    other = clf.FinetuneConfig(**{**config.__dict__, "seed": 1})
    _, _, new = clf.finetune_cached("toy", tmp_path, tiny_dir, other, train, dev)
    assert new != path and (new / clf.CACHE_FILE).is_file()
    (new / clf.CACHE_FILE).unlink()  # an unfinished run is trained again
    clf.finetune_cached("toy", tmp_path, tiny_dir, other, train, dev)
    assert (new / clf.CACHE_FILE).is_file()


def test_ranges_stay_fixed_while_a_qat_model_is_evaluated(tiny_dir):
    model, tokenizer = load_encoder_classifier(tiny_dir, 2)
    qat = eightbit.prepare_qat(model, QATConfig())
    config = clf.FinetuneConfig(**{**FAST.__dict__, "epochs": 1})
    clf.train_classifier(qat, tokenizer, synthetic_split(16), config, dev=synthetic_split(8, 5))
    layer = qat.bert.encoder.layer[1].attention.self.query
    before = [float(v) for v in layer.input_observer.range()]
    with clf.ranges_frozen(qat):
        predict(qat, tokenizer, ["awful awful awful flight"] * 4, progress=False)
    assert [float(v) for v in layer.input_observer.range()] == before
    assert layer.observe, "the flag is restored after the block"


def test_finetune_cached_names_missing_base_files(tmp_path):
    (tmp_path / "base").mkdir()
    with pytest.raises(EightbitError, match=r"missing config\.json, model\.safetensors"):
        clf.finetune_cached("toy", tmp_path / "cache", tmp_path / "base", FAST, synthetic_split(4))
