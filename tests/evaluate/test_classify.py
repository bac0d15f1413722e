"""Classification evaluation end to end on a tiny BERT and 40 synthetic texts."""

import json
from unittest.mock import ANY

import pytest
import torch

from eightbit.evaluate import classify
from eightbit.models.bert import load_encoder_classifier
from eightbit.training.classifier import FinetuneConfig, train_classifier
from tests.tiny_classifier import synthetic_split, write_tiny_bert

METHODS = ("dynamic", "minmax", "kl-independent", "qat")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: a second thread only adds contention
    try:
        directory = write_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")
        model, tokenizer = load_encoder_classifier(directory, 2)
        train, test = synthetic_split(40, seed=0), synthetic_split(40, seed=1)
        finetune = FinetuneConfig(
            epochs=20, batch_size=8, learning_rate=3e-3, max_length=16, threads=1, progress=False
        )
        train_classifier(model, tokenizer, train, finetune)
        config = classify.ClassifyEvalConfig(
            methods=METHODS,
            calibration_size=16,
            batch_size=8,
            max_length=16,
            qat_finetune=FinetuneConfig(
                epochs=2, batch_size=8, learning_rate=1e-3, max_length=16, threads=1, progress=False
            ),
            progress=False,
        )
        task = classify.ClassifyTask("toy", model, tokenizer, train, test)
        yield classify.run_classify_eval([task], config)
    finally:
        torch.set_num_threads(threads)


def test_report_schema(report):
    (entry,) = report["tasks"]
    assert entry["task"] == "toy" and entry["labels"] == ["negative", "positive"]
    assert set(entry["fp32"]) >= {"accuracy", "balanced_accuracy", "size_mb"}
    assert [r["method"] for r in entry["int8"]] == list(METHODS)
    n = entry["test_examples"]
    for row in entry["int8"]:
        assert set(row) >= {"method", "accuracy", "balanced_accuracy", "size_mb", "p_vs_fp32"}
        assert 0.0 <= row["balanced_accuracy"] <= 1.0
        # the paired counts explain the accuracy difference exactly
        assert row["fixed"] - row["broken"] == round(
            n * (row["accuracy"] - entry["fp32"]["accuracy"])
        )
        assert row["fp32_agreement"] <= 1.0 - (row["broken"] + row["fixed"]) / n + 1e-9
        assert 0.0 < row["p_vs_fp32"] <= 1.0
    json.dumps(report)  # plain JSON types only


def test_int8_variants_keep_the_fp32_accuracy_and_shrink(report):
    (entry,) = report["tasks"]
    fp32 = entry["fp32"]
    assert fp32["accuracy"] >= 0.9
    for row in entry["int8"]:
        assert row["accuracy"] >= fp32["accuracy"] - 0.1, row
        assert row["size_mb"] < fp32["size_mb"] * 0.6, row  # tiny model: metadata weighs in


def test_qat_converted_model_matches_its_fake_quant_model(report):
    qat = next(r for r in report["tasks"][0]["int8"] if r["method"] == "qat")
    assert qat["qat_prediction_agreement"] == 1.0
    assert qat["qat_max_abs_diff"] < 1e-2 * max(1.0, qat["qat_logit_max_abs"])


def test_reports_are_written(report, tmp_path):
    paths = classify.write_reports(report, tmp_path)
    assert sorted(p.name for p in paths) == ["classify.json", "classify.md", "classify_toy.png"]
    assert json.loads((tmp_path / "classify.json").read_text()) == report
    markdown = (tmp_path / "classify.md").read_text()
    assert "### toy (40 test examples, 2 classes)" in markdown and "INT8 qat" in markdown
    assert "| broken / fixed | McNemar p |" in markdown
    assert (tmp_path / "classify_toy.png").read_bytes()[:4] == b"\x89PNG"


def test_unknown_method_is_refused():
    task = classify.ClassifyTask("toy", None, None, synthetic_split(2), synthetic_split(2))
    with pytest.raises(ValueError, match="unknown methods"):
        classify.evaluate_task(task, classify.ClassifyEvalConfig(methods=("fp16",)))


def _first_query_weight(model):
    return model.bert.encoder.layer[0].attention.self.query.weight.detach().clone()


@pytest.mark.parametrize("start", ["finetuned", "pretrained"])
def test_qat_starts_from_the_fine_tune_or_from_the_pretrained_encoder(start, tmp_path, monkeypatch):
    base = write_tiny_bert(tmp_path / "base")
    model, tokenizer = load_encoder_classifier(base, 2)
    train = synthetic_split(16)
    tiny = FinetuneConfig(epochs=1, batch_size=8, max_length=16, threads=1, progress=False)
    train_classifier(model, tokenizer, train, tiny)
    starts = []

    def recording(qat, *args, **kwargs):
        starts.append(_first_query_weight(qat))
        return train_classifier(qat, *args, **kwargs)

    monkeypatch.setattr(classify, "train_classifier", recording)
    task = classify.ClassifyTask("toy", model, tokenizer, train, synthetic_split(8, 2), "", base)
    config = classify.ClassifyEvalConfig(
        methods=("qat",), batch_size=8, max_length=16, qat_finetune=tiny, qat_start=start,
        progress=False,
    )  # fmt: skip
    (row,) = classify.evaluate_task(task, config)["int8"]
    pretrained = _first_query_weight(load_encoder_classifier(base, 2)[0])
    fine_tuned = _first_query_weight(model)
    assert not torch.equal(pretrained, fine_tuned)
    assert torch.equal(starts[0], pretrained if start == "pretrained" else fine_tuned)
    assert row["qat_prediction_agreement"] == 1.0


def test_qat_start_is_checked_and_keys_the_qat_cache(tmp_path):
    task = classify.ClassifyTask("toy", None, None, synthetic_split(2), synthetic_split(2))
    with pytest.raises(ValueError, match="unknown QAT start"):
        classify.evaluate_task(task, classify.ClassifyEvalConfig(qat_start="scratch"))
    with pytest.raises(ValueError, match="needs its base_model"):
        classify.evaluate_task(task, classify.ClassifyEvalConfig(qat_start="pretrained"))

    def key(base, start):
        task_from = classify.ClassifyTask("toy", None, None, task.train, task.test, "src", base)
        config = classify.ClassifyEvalConfig(qat_start=start)
        return classify.key_hash(classify._qat_cache_key(task_from, config))

    base = write_tiny_bert(tmp_path / "base")
    other = write_tiny_bert(tmp_path / "other", with_head=True)  # other weights
    assert len({key(base, s) for s in classify.QAT_STARTS}) == 2
    # the pre-trained weights key QAT from them, and only that start
    assert key(base, "pretrained") != key(other, "pretrained")
    assert key(base, "finetuned") == key(other, "finetuned")


def test_demo_finetunes_once_then_reuses_the_cache(tmp_path, caplog):
    base = write_tiny_bert(tmp_path / "base")
    splits = {
        "train": synthetic_split(16),
        "dev": synthetic_split(4, 1),
        "test": synthetic_split(8, 2),
    }
    tiny = FinetuneConfig(epochs=1, batch_size=8, max_length=16, threads=1, progress=False)
    config = classify.ClassifyEvalConfig(
        methods=("dynamic", "minmax", "qat"),
        calibration_size=8,
        batch_size=8,
        max_length=16,
        qat_finetune=tiny,
    )

    def run():
        return classify.run_classify_demo(
            tmp_path / "cache", base, ("toy",), tiny, config, load=lambda task, split: splits[split]
        )

    first = run()
    with caplog.at_level("INFO", logger="eightbit"):
        second = run()
    assert "reusing the fine-tuned toy classifier" in caplog.text
    assert "reusing the QAT toy model" in caplog.text
    assert first["tasks"][0]["fp32"] == {**second["tasks"][0]["fp32"], "predict_seconds": ANY}
    rows = [
        {**r, "predict_seconds": ANY, "quantize_seconds": ANY} for r in first["tasks"][0]["int8"]
    ]
    assert second["tasks"][0]["int8"] == rows
    assert [r["method"] for r in rows] == ["dynamic", "minmax", "qat"]
    entries = sorted(p.name.split("-")[1] for p in (tmp_path / "cache").iterdir())
    assert len(entries) == 2 and entries[1] == "qat"
