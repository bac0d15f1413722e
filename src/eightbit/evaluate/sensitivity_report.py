"""The sensitivity report directory: ``sensitivity.md``, ``sensitivity.json``,
``sensitivity.png`` (per-layer chart) and ``histograms.png`` (activations with every method's
range)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eightbit.atomic import write_text_atomic
from eightbit.evaluate.report import markdown_table, write_json
from eightbit.evaluate.sensitivity_plots import histograms_png, sensitivity_chart_png, short_name


def _models(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rows = [("FP32", report["fp32"]), (f"INT8 {report['method']}", report["int8"])]
    if "mixed" in report:
        kept = len(report["fallback"]["fp32_layers"])
        rows.append((f"INT8 {report['method']}, {kept} layers FP32", report["mixed"]))
    return rows


def _accuracy_table(report: dict[str, Any]) -> str:
    headers = ["model", "dev BLEU", "chrF", "EOS failures", "len ratio"]
    rows = [
        [name, r["bleu"], r["chrf"], f"{r['eos_failure_rate']:.1%}", f"{r['length_ratio']:.3f}"]
        for name, r in _models(report)
    ]
    return markdown_table(headers, rows)


def _speed_table(report: dict[str, Any]) -> str:
    base = report["fp32"]["translate_seconds"]
    headers = ["model", "translate s", "tokens", "tokens/s", "speed x"]
    rows = [
        [
            name,
            r["translate_seconds"],
            r["tokens"],
            f"{r['tokens_per_second']:.0f}",
            f"{base / r['translate_seconds']:.2f}",
        ]
        for name, r in _models(report)
    ]
    return markdown_table(headers, rows)


def _db(value: float | None) -> str:
    return "exact" if value is None else f"{value:.1f}"


def _layer_table(report: dict[str, Any]) -> str:
    headers = ["rank", "layer", "method", "SQNR dB", "only INT8", "only FP32", "harm"]
    rows = [
        [
            i + 1,
            short_name(r["name"]),
            r.get("method") or "-",
            _db(r["sqnr_db"]),
            f"{r['only_int8_delta']:+.2f}",
            f"{r['only_fp32_delta']:+.2f}",
            f"{r['harm']:.2f}",
        ]
        for i, r in enumerate(report["layers"])
    ]
    return markdown_table(headers, rows)


def _fallback_text(report: dict[str, Any]) -> str:
    fb = report.get("fallback")
    if fb is None:
        return ""
    layers = ", ".join(f"`{short_name(n)}`" for n in fb["fp32_layers"]) or "none"
    return (
        f"## FP32 fallback (budget {fb['max_drop']:g} BLEU)\n\n"
        f"Kept in FP32: {layers}. Dev BLEU FP32 {fb['fp32']:.2f}, all INT8 {fb['int8']:.2f}, "
        f"mixed {fb['final']:.2f} (drop {fb['drop']:.2f}; {fb['evaluations']} dev evaluations)."
        "\n\n"
    )


def to_markdown(report: dict[str, Any]) -> str:
    """The Markdown report: accuracy, speed, fallback and the ranked layer table."""
    return (
        f"# Sensitivity of {report['model']} ({report['method']})\n\n"
        f"Greedy decoding of {report['dev_sentences']} dev sentences (seed {report['seed']}); "
        f"calibration on {report['calibration_sentences']} training sentences; "
        f"{report['seconds']:.0f} s in all.\n\n"
        f"## Accuracy\n\n{_accuracy_table(report)}\n"
        f"## Speed (same run)\n\n{_speed_table(report)}\n"
        f"{_fallback_text(report)}"
        "## Layers, most harmful first\n\n"
        "SQNR: INT8 layer output vs FP32 on calibration data. Only INT8: dev BLEU change when "
        "only this layer is INT8. Only FP32: change when only this layer stays FP32. "
        "Harm = only FP32 - only INT8. Plots: `sensitivity.png`, `histograms.png`.\n\n"
        f"{_layer_table(report)}"
    )


def write_sensitivity_reports(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write the four report files into ``out_dir``; returns their paths."""
    return [
        write_json(out_dir / "sensitivity.json", report),
        write_text_atomic(out_dir / "sensitivity.md", to_markdown(report)),
        sensitivity_chart_png(out_dir / "sensitivity.png", report["layers"]),
        histograms_png(out_dir / "histograms.png", report["histograms"]),
    ]
