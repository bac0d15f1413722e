"""Sensitivity analysis, FP32 fallback and the report directory on a tiny Marian model."""

import json

import pytest

from eightbit.evaluate.sensitivity import (
    SensitivityConfig,
    quantize_with_fallback,
    run_sensitivity,
)
from eightbit.evaluate.sensitivity_nmt import translation_task
from eightbit.evaluate.sensitivity_report import write_sensitivity_reports
from eightbit.mixed.units import quantized_units
from eightbit.models.marian import load_translation_model, save_translation_model, translate
from tests.helpers import TINY_PAIRS, tiny_marian_dir

SOURCES = [s for s, _ in TINY_PAIRS[:6]]
DEV = TINY_PAIRS[-8:]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_marian_dir(tmp_path_factory.mktemp("marian"))


@pytest.fixture(scope="module")
def report(model_dir):
    task = translation_task(model_dir, SOURCES, DEV, dev_size=4, progress=False)
    config = SensitivityConfig(method="auto", max_drop=0.0, progress=False)
    return run_sensitivity(task, config)


def test_report_ranks_every_quantized_layer(report):
    layers = report["layers"]
    # 6 linears in the encoder layer, 10 in the decoder layer, lm_head, one tied embedding table
    assert len(layers) == 6 + 10 + 1 + 1
    harms = [r["harm"] for r in layers]
    assert harms == sorted(harms, reverse=True)
    for r in layers:
        assert r["harm"] == pytest.approx(r["only_fp32_delta"] - r["only_int8_delta"], abs=1e-3)
        assert (r["method"] is None) == (r["kind"] == "embedding")
    assert report["fallback"]["drop"] <= 0.0 + 1e-9
    assert report["mixed"]["bleu"] == report["fallback"]["final"]
    assert len(report["histograms"]) == 4
    for view in report["histograms"].values():
        assert len(view["edges"]) == len(view["counts"]) + 1
        assert set(view["thresholds"]) >= {"minmax", "kl-independent", "mse"}


def test_report_directory_has_markdown_json_and_pngs(report, tmp_path):
    paths = write_sensitivity_reports(report, tmp_path / "reports")
    assert [p.name for p in paths] == [
        "sensitivity.json",
        "sensitivity.md",
        "sensitivity.png",
        "histograms.png",
    ]
    assert all(p.stat().st_size > 0 for p in paths)
    for png in paths[2:]:
        assert png.read_bytes()[:4] == b"\x89PNG"
    markdown = paths[1].read_text()
    assert "## Accuracy" in markdown and "## Speed (same run)" in markdown
    assert json.loads(paths[0].read_text())["dev_sentences"] == 4


def test_fallback_is_recorded_in_the_saved_model(model_dir, tmp_path):
    task = translation_task(model_dir, SOURCES, DEV, dev_size=4, progress=False)
    config = SensitivityConfig(method="kl-symmetric", max_drop=0.0, progress=False)
    int8, record = quantize_with_fallback(task, config)
    tokenizer = task.tokenizer
    assert record["drop"] <= 1e-9
    unit_names = {u.name for u in quantized_units(int8)}
    assert not unit_names & set(record["fp32_layers"]), "FP32 layers are no longer INT8"
    path = save_translation_model(int8, tokenizer, tmp_path / "mixed")
    meta = json.loads((path / "eightbit.json").read_text())
    assert meta["extra"]["fp32_fallback"] == record
    assert meta["quantization"]["method"] == "kl-symmetric"
    loaded, loaded_tok = load_translation_model(path)
    sources = [s for s, _ in DEV]
    assert [t.text for t in translate(loaded, loaded_tok, sources, progress=False)] == [
        t.text for t in translate(int8, tokenizer, sources, progress=False)
    ]


def test_speed_table_of_a_run_too_fast_to_time(report):
    """Times round to 0 s on tiny models: the report shows "-" instead of dividing by zero."""
    import copy

    from eightbit.evaluate.sensitivity_report import to_markdown

    fast = copy.deepcopy(report)
    for entry in (fast["fp32"], fast["int8"], fast["mixed"]):
        entry["translate_seconds"] = 0.0
    speed = to_markdown(fast).split("## Speed (same run)")[1]
    assert "| - |" in speed
