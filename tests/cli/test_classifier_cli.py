"""``analyze`` and ``quantize`` on a fine-tuned classifier: end to end, and bad input.

The shipped corpora are replaced by the 40 synthetic texts the tiny classifier learned (their
labels, negative/positive, are the sentiment task's, so the task is also told from the labels).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import eightbit
from eightbit.cli import main
from eightbit.data import classification
from eightbit.data.classification import LabeledSplit
from eightbit.models.bert import load_classifier
from eightbit.nn import QuantLinear
from tests.cli.test_bad_input import fails, listing
from tests.tiny_classifier import synthetic_split, write_tiny_bert

SPLITS = {"train": synthetic_split(40, seed=0), "dev": synthetic_split(24, seed=1)}
FAST = ["--dev-size", "12", "--calibration-size", "16"]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def toy_data(monkeypatch):
    """Every task's splits are the synthetic ones."""
    monkeypatch.setattr(classification, "load_task", lambda task, split: SPLITS[split])


def test_analyze_and_fallback_end_to_end(fine_tuned_classifier, toy_data, tmp_path, capsys):
    model = str(fine_tuned_classifier)
    reports = tmp_path / "reports"
    argv = ["-q", "analyze", model, "--method", "auto", "--max-accuracy-drop", "0", *FAST]
    assert main([*argv, "--output-dir", str(reports), "--json", str(tmp_path / "r.json")]) == 0
    assert "| model | dev accuracy % | balanced accuracy % |" in capsys.readouterr().out
    assert listing(reports) == [
        "histograms.png",
        "sensitivity.json",
        "sensitivity.md",
        "sensitivity.png",
    ]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["classification_task"] == "sentiment"  # told from the label names
    assert report["dev_examples"] == 12 and report["calibration_texts"] == 16
    out = tmp_path / "int8"
    argv = ["-q", "quantize", model, str(out), "--task", "sentiment", *FAST]
    assert main([*argv, "--method", "kl-symmetric", "--max-accuracy-drop", "0.5"]) == 0
    assert "dev accuracy (%) FP32" in capsys.readouterr().out
    record = json.loads((out / "eightbit.json").read_text())["extra"]["fp32_fallback"]
    assert record["metric"] == "dev accuracy (%)" and record["max_drop"] == 0.5
    assert record["drop"] <= 0.5
    loaded, _ = load_classifier(out)
    assert loaded.config.id2label == {0: "negative", 1: "positive"}


def test_fallback_keeps_the_quantization_options(fine_tuned_classifier, toy_data, tmp_path):
    out = tmp_path / "int8"
    argv = ["-q", "quantize", str(fine_tuned_classifier), str(out), "--method", "minmax", *FAST]
    options = ["--exclude", "classifier", "--no-per-channel", "--max-accuracy-drop", "100"]
    assert main([*argv, *options]) == 0
    meta = json.loads((out / "eightbit.json").read_text())
    assert meta["quantization"]["exclude"] == ["classifier"]
    assert meta["quantization"]["per_channel"] is False
    loaded = eightbit.load(out)
    assert not isinstance(loaded.classifier, QuantLinear)  # excluded: never INT8
    dense = loaded.bert.encoder.layer[0].output.dense
    assert isinstance(dense, QuantLinear)
    assert torch.unique(dense.weight_scale).numel() == 1  # one scale per tensor


@pytest.mark.parametrize("method", ["minmax", "dynamic"])
def test_quantize_a_classifier(fine_tuned_classifier, toy_data, tmp_path, method):
    out = tmp_path / "int8"
    argv = ["-q", "quantize", str(fine_tuned_classifier), str(out), "--method", method]
    assert main([*argv, "--calibration-size", "8"]) == 0
    meta = json.loads((out / "eightbit.json").read_text())
    assert meta["architecture"]["class"] == "BertForSequenceClassification"
    assert meta["quantization"]["method"] == method


def test_quantize_a_classifier_on_a_calibration_file(fine_tuned_classifier, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("the food was good\nawful service\n")
    out = tmp_path / "int8"
    argv = ["quantize", str(fine_tuned_classifier), str(out), "--calibration-file", str(texts)]
    assert main(["-q", *argv]) == 0  # no task needed: the data is given
    assert (out / "eightbit.json").is_file()


def test_budget_of_the_other_family(checkpoint, fine_tuned_classifier, tmp_path, capsys):
    marian, bert = str(checkpoint), str(fine_tuned_classifier)
    fails(["analyze", marian, "--max-accuracy-drop", "1"], capsys, "Marian", "--max-bleu-drop")
    fails(["analyze", marian, "--task", "topics"], capsys, "--task:", "Marian translation")
    out = str(tmp_path / "out")
    fails(["quantize", bert, out, "--max-bleu-drop", "1"], capsys, "classifier", "--max-accuracy")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "options, fragments",
    [
        (["--max-accuracy-drop", "-1"], ("--max-accuracy-drop: expected a non-negative",)),
        (["--max-accuracy-drop", "nan"], ("--max-accuracy-drop: expected a non-negative",)),
        (["--max-accuracy-drop", "1", "--method", "dynamic"], ("not dynamic",)),
        (["--max-accuracy-drop", "1", "--method", "ema"], ("--method ema", "expected one of")),
        (["--max-accuracy-drop", "1", "--dev-size", "0"], ("--dev-size: expected a positive",)),
        (["--max-accuracy-drop", "1", "--calibration-size", "0"], ("--calibration-size",)),
    ],
)
def test_bad_fallback_values(fine_tuned_classifier, tmp_path, capsys, options, fragments):
    fails(
        ["quantize", str(fine_tuned_classifier), str(tmp_path / "o"), *options], capsys, *fragments
    )
    assert not (tmp_path / "o").exists()


def test_a_classifier_with_unnamed_labels_needs_task(fine_tuned_classifier, tmp_path, capsys):
    unnamed = tmp_path / "unnamed"
    shutil.copytree(fine_tuned_classifier, unnamed)
    config = json.loads((unnamed / "config.json").read_text())
    config["id2label"] = {"0": "LABEL_0", "1": "LABEL_1"}
    config["label2id"] = {"LABEL_0": 0, "LABEL_1": 1}
    (unnamed / "config.json").write_text(json.dumps(config))
    fails(["analyze", str(unnamed)], capsys, "cannot tell the task", "expected --task sentiment")


def test_an_encoder_without_head_is_refused(tmp_path, capsys):
    encoder = write_tiny_bert(tmp_path / "encoder")
    fails(["analyze", str(encoder), "--task", "sentiment"], capsys, "no sequence-classification")


def test_labels_of_another_task_are_refused(fine_tuned_classifier, monkeypatch, capsys):
    other = LabeledSplit(SPLITS["train"].texts, SPLITS["train"].labels, ("bad", "good"))
    monkeypatch.setattr(classification, "load_task", lambda task, split: other)
    argv = ["analyze", str(fine_tuned_classifier), "--task", "sentiment"]
    fails(argv, capsys, "labels are negative, positive; the task's are bad, good")


def test_an_unknown_model_type_is_refused(fine_tuned_classifier, tmp_path, capsys):
    odd = tmp_path / "odd"
    shutil.copytree(fine_tuned_classifier, odd)
    config = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    fails(["analyze", str(odd)], capsys, "model_type 'gpt2'", "expected marian or one of bert")
    (odd / "config.json").write_text("{not json")
    fails(["analyze", str(odd)], capsys, "cannot read config.json")
