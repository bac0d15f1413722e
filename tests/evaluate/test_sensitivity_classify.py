"""Sensitivity analysis and FP32 fallback of a tiny fine-tuned BERT classifier (accuracy)."""

import dataclasses
import json

import pytest
import torch
from torch import nn

import eightbit
from eightbit.data.classification import LabeledSplit
from eightbit.data.parallel import intra_op_threads
from eightbit.evaluate.sensitivity import SensitivityConfig, quantize_with_fallback, run_sensitivity
from eightbit.evaluate.sensitivity_classify import (
    AccuracyScorer,
    classification_task,
    dev_split,
    held_out,
    load_fine_tuned,
)
from eightbit.evaluate.sensitivity_report import write_sensitivity_reports
from eightbit.mixed.units import quantized_units
from eightbit.models.bert import load_classifier, predict_logits, save_classifier
from eightbit.models.common import ModelLoadError
from eightbit.nn import QuantLinear
from tests.tiny_classifier import synthetic_split, write_tiny_bert

TRAIN, DEV = synthetic_split(40, seed=0), synthetic_split(24, seed=1)
SMALL = {"calibration_size": 16, "batch_size": 8, "max_length": 16, "task_name": "toy"}


@pytest.fixture(scope="module")
def model_dir(fine_tuned_classifier):
    return fine_tuned_classifier


@pytest.fixture(scope="module")
def report(model_dir):
    with intra_op_threads(1):
        task = classification_task(model_dir, TRAIN, DEV, **SMALL)
        config = SensitivityConfig(method="auto", max_drop=0.0, progress=False)
        return run_sensitivity(task, config)


def test_report_ranks_every_quantized_layer(report):
    layers = report["layers"]
    # 6 linears in each of 2 layers, the pooler, the classifier, 3 embedding tables
    assert len(layers) == 6 * 2 + 2 + 3
    assert {r["name"] for r in layers} >= {"classifier", "bert.pooler.dense"}
    harms = [r["harm"] for r in layers]
    assert harms == sorted(harms, reverse=True)
    for r in layers:
        assert r["harm"] == pytest.approx(r["only_fp32_delta"] - r["only_int8_delta"], abs=1e-3)
        assert (r["method"] is None) == (r["kind"] == "embedding")
    assert report["task"] == "classification" and report["metric"] == "dev accuracy (%)"
    assert report["dev_examples"] == len(DEV.texts) and report["dev_split"] == "dev"
    assert report["fp32"]["accuracy"] >= 90.0  # percent: the tiny model learned its toy task
    assert report["fallback"]["drop"] <= 1e-9
    assert report["mixed"]["accuracy"] == report["fallback"]["final"]
    assert len(report["histograms"]) == 4


def test_report_directory_reads_in_accuracy(report, tmp_path):
    paths = write_sensitivity_reports(report, tmp_path / "reports")
    assert all(p.stat().st_size > 0 for p in paths)
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths[2:])
    markdown = paths[1].read_text()
    assert "| model | dev accuracy % | balanced accuracy % |" in markdown
    assert "budget 0 accuracy points" in markdown and "BLEU" not in markdown
    assert json.loads(paths[0].read_text())["classification_task"] == "toy"


def test_fallback_keeps_the_harmful_layer_fp32_and_reloads(model_dir, tmp_path, one_thread):
    task = classification_task(model_dir, TRAIN, DEV, **SMALL)
    real = task.score

    def score(model: nn.Module) -> float:  # pretend an INT8 classifier head costs 10 points
        return real(model) - 10.0 * isinstance(model.get_submodule("classifier"), QuantLinear)

    task = dataclasses.replace(task, score=score)
    int8, record = quantize_with_fallback(
        task, SensitivityConfig("minmax", max_drop=0.5, progress=False)
    )
    assert record["fp32_layers"] == ["classifier"]
    assert record["int8"] < record["fp32"] - 0.5 and record["drop"] <= 0.5  # it was needed
    assert "classifier" not in {u.name for u in quantized_units(int8)}
    path = save_classifier(int8, task.tokenizer, tmp_path / "mixed")
    meta = json.loads((path / "eightbit.json").read_text())
    assert meta["extra"]["fp32_fallback"] == record
    assert meta["quantization"]["method"] == "minmax"
    loaded = eightbit.load(path)
    assert type(loaded.classifier) is nn.Linear
    assert isinstance(loaded.bert.pooler.dense, QuantLinear)
    reloaded, tokenizer = load_classifier(path)
    texts = list(DEV.texts)
    assert torch.equal(
        predict_logits(reloaded, tokenizer, texts, 8, 16, False),
        predict_logits(int8, task.tokenizer, texts, 8, 16, False),
    )
    scorer = AccuracyScorer(tokenizer, list(zip(DEV.texts, DEV.labels, strict=True)), 8, 16)
    assert scorer(reloaded) == real(int8)


def test_held_out_part_of_train_is_stratified_and_disjoint():
    rest, dev = held_out(TRAIN, 0.1, seed=3)
    assert len(dev.texts) == 4 and sorted(dev.labels) == [0, 0, 1, 1]
    assert len(rest.texts) + len(dev.texts) == len(TRAIN.texts)
    pairs = set(zip(TRAIN.texts, TRAIN.labels, strict=True))
    assert (
        set(zip(rest.texts, rest.labels, strict=True))
        | set(zip(dev.texts, dev.labels, strict=True))
        == pairs
    )
    assert held_out(TRAIN, 0.1, seed=3) == (rest, dev)
    assert held_out(TRAIN, 0.1, seed=4) != (rest, dev)


def test_no_dev_split_scores_on_held_out_train_and_calibrates_on_the_rest(model_dir):
    empty = LabeledSplit((), (), TRAIN.label_names)
    pool, dev, source = dev_split(TRAIN, empty)
    assert source.startswith("train (held out 10%")
    assert not set(pool.texts) & set(dev.texts)
    task = classification_task(model_dir, TRAIN, None, **SMALL)
    assert task.describe["dev_split"] == source and task.describe["dev_examples"] == 4


def test_refuses_a_checkpoint_without_head_or_with_other_labels(model_dir, tmp_path):
    encoder = write_tiny_bert(tmp_path / "encoder")
    with pytest.raises(ModelLoadError, match="no sequence-classification head"):
        load_fine_tuned(encoder, TRAIN.label_names)
    with pytest.raises(ModelLoadError, match="labels are negative, positive; the task's are a, b"):
        load_fine_tuned(model_dir, ("a", "b"))
    with pytest.raises(ModelLoadError, match="2 labels, the task 3"):
        load_fine_tuned(model_dir, ("a", "b", "c"))
