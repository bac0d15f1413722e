"""The classification benchmark's schema and its ONNX Runtime peer (no timing is asserted)."""

import json

import numpy as np
import pytest
import torch

from eightbit.bench import classify
from eightbit.bench.classify import (
    ClassifyResult,
    goal_check,
    random_inputs,
    run_classify_benchmark,
    to_markdown,
)
from eightbit.bench.ort_classifier import (
    export_classifier,
    ort_classifier_runner,
    quantize_onnx_dynamic,
)
from eightbit.cli import main
from tests.tiny_classifier import write_tiny_bert

pytest.importorskip("onnxruntime")

FIELDS = {"model", "engine", "precision", "batch", "seq_len", "ms", "vs_torch_fp32", "vs_ort_int8"}
ENGINES = {
    ("torch", "fp32"),
    ("eightbit", "int8-static"),
    ("eightbit", "int8-static-7bit"),
    ("eightbit", "int8-dynamic"),
    ("onnxruntime", "fp32"),
    ("onnxruntime", "int8-dynamic"),
}


@pytest.fixture(scope="module")
def tiny_factory(tmp_path_factory):
    from transformers import BertForSequenceClassification

    directory = write_tiny_bert(tmp_path_factory.mktemp("tiny"), with_head=True)
    return lambda: BertForSequenceClassification.from_pretrained(str(directory)).eval()


def test_report_rows_cover_every_engine_and_batch(tiny_factory):
    report = run_classify_benchmark(
        {"tiny": tiny_factory},
        batches=(1, 3),
        seq_len=8,
        method="minmax",
        calibration_batches=1,
        repeats=1,
        progress=False,
    )
    rows = report["results"]
    assert {(r["engine"], r["precision"], r["batch"]) for r in rows} == {
        (*e, b) for e in ENGINES for b in (1, 3)
    }
    for row in rows:
        assert set(row) == FIELDS
        assert row["seq_len"] == 8 and row["ms"] > 0
        if (row["engine"], row["precision"]) == ("torch", "fp32"):
            assert row["vs_torch_fp32"] == 1.0
        if (row["engine"], row["precision"]) == ("onnxruntime", "int8-dynamic"):
            assert row["vs_ort_int8"] == 1.0
    assert report["goal"] == {}  # the goal is about bert-base only
    markdown = to_markdown(report)
    assert markdown.count("| tiny |") == len(rows)
    json.dumps(report)  # JSON-ready


def _row(engine: str, precision: str, vs_torch: float, vs_ort: float) -> ClassifyResult:
    return ClassifyResult("bert-base", engine, precision, 8, 128, 10.0, vs_torch, vs_ort)


def test_goal_needs_both_ratios():
    results = [
        _row("torch", "fp32", 1.0, 0.5),
        _row("eightbit", "int8-static", 1.9, 0.9),
        _row("eightbit", "int8-static-7bit", 2.0, 1.1),
        _row("eightbit", "int8-dynamic", 1.7, 1.2),
    ]
    goal = goal_check(results)
    assert {k: v["met"] for k, v in goal.items()} == {
        "int8-static": False,
        "int8-static-7bit": True,
        "int8-dynamic": False,
    }
    assert "int8-static-7bit: 2.00x torch FP32, 1.10x ORT INT8: met" in to_markdown(
        {
            "threads": 2,
            "backend": "avx2",
            "seq_len": 128,
            "machine": {"torch": "t", "onnxruntime": "o"},
            "results": [],
            "goal": goal,
        }
    )


def test_onnx_export_agrees_with_torch_fp32(tiny_factory, tmp_path):
    model = tiny_factory()
    inputs = random_inputs(model.config.vocab_size, 3, 8)
    with torch.no_grad():
        expected = model(**inputs).logits.numpy()
    fp32 = export_classifier(model, random_inputs(model.config.vocab_size, 2, 8), tmp_path / "m")
    (logits,) = ort_classifier_runner(fp32, inputs, threads=1)()  # another batch size
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
    int8 = quantize_onnx_dynamic(fp32, tmp_path / "q")
    (logits8,) = ort_classifier_runner(int8, inputs, threads=1)()
    assert logits8.shape == expected.shape
    assert not np.array_equal(logits8, logits)  # really quantized
    assert np.abs(logits8 - expected).max() < 0.1 * np.abs(expected).max() + 1e-3


def test_cli_writes_json_and_markdown(tiny_factory, tmp_path, monkeypatch):
    monkeypatch.setitem(classify.MODELS, "minilm", tiny_factory)  # the shipped name, tiny model
    out, md = tmp_path / "c.json", tmp_path / "c.md"
    argv = ["--quiet", "bench", "classify", "--models", "minilm", "--batch", "2"]
    argv += ["--seq-len", "8", "--method", "minmax", "--calibration-batches", "1"]
    argv += ["--repeats", "1", "--json", str(out), "--markdown", str(md)]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert len(data["results"]) == len(ENGINES)
    assert data["calibration"]["method"] == "minmax"
    assert md.read_text().startswith("Classification benchmark")
