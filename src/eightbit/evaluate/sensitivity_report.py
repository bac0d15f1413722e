"""The sensitivity report directory: ``sensitivity.md``, ``sensitivity.json``,
``sensitivity.png`` (per-layer chart) and ``histograms.png`` (activations with every method's
range)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class _View:
    """How one task kind's rows read: table columns, metric name and budget unit."""

    metric: str  # "dev BLEU"
    unit: str  # of a budget: "BLEU"
    accuracy: tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...]
    seconds: str  # key of the timed part
    amount: tuple[str, str]  # (header, key) of what was produced in that time
    rate: tuple[str, str]
    intro: Callable[[dict[str, Any]], str]


_VIEWS = {
    "translation": _View(
        metric="dev BLEU",
        unit="BLEU",
        accuracy=(
            ("dev BLEU", lambda r: r["bleu"]),
            ("chrF", lambda r: r["chrf"]),
            ("EOS failures", lambda r: f"{r['eos_failure_rate']:.1%}"),
            ("len ratio", lambda r: f"{r['length_ratio']:.3f}"),
        ),
        seconds="translate_seconds",
        amount=("tokens", "tokens"),
        rate=("tokens/s", "tokens_per_second"),
        intro=lambda r: (
            f"Greedy decoding of {r['dev_sentences']} dev sentences (seed {r['seed']}); "
            f"calibration on {r['calibration_sentences']} training sentences"
        ),
    ),
    "classification": _View(
        metric="dev accuracy %",
        unit="accuracy points",
        accuracy=(
            ("dev accuracy %", lambda r: r["accuracy"]),
            ("balanced accuracy %", lambda r: r["balanced_accuracy"]),
        ),
        seconds="predict_seconds",
        amount=("texts", "texts"),
        rate=("texts/s", "texts_per_second"),
        intro=lambda r: (
            f"Task {r['classification_task'] or '(unnamed)'}: {r['dev_examples']} dev examples "
            f"from {r['dev_split']} (seed {r['seed']}); calibration on "
            f"{r['calibration_texts']} training texts"
        ),
    ),
}


def _view(report: dict[str, Any]) -> _View:
    return _VIEWS[report.get("task", "translation")]  # reports before classifiers: translation


def _accuracy_table(report: dict[str, Any]) -> str:
    columns = _view(report).accuracy
    headers = ["model", *(header for header, _ in columns)]
    rows = [[name, *(cell(r) for _, cell in columns)] for name, r in _models(report)]
    return markdown_table(headers, rows)


def _speedup(base_seconds: float, seconds: float) -> str:
    """FP32 time over this model's; "-" when either rounds to 0 s (a tiny model or dev set)."""
    return f"{base_seconds / seconds:.2f}" if base_seconds > 0 and seconds > 0 else "-"


def _speed_table(report: dict[str, Any]) -> str:
    view = _view(report)
    base = report["fp32"][view.seconds]
    timed = view.seconds.replace("_seconds", " s")
    headers = ["model", timed, view.amount[0], view.rate[0], "speed x"]
    rows = [
        [
            name,
            r[view.seconds],
            r[view.amount[1]],
            f"{r[view.rate[1]]:.0f}",
            _speedup(base, r[view.seconds]),
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
    view = _view(report)
    layers = ", ".join(f"`{short_name(n)}`" for n in fb["fp32_layers"]) or "none"
    metric = view.metric[0].upper() + view.metric[1:]
    return (
        f"## FP32 fallback (budget {fb['max_drop']:g} {view.unit})\n\n"
        f"Kept in FP32: {layers}. {metric}: FP32 {fb['fp32']:.2f}, "
        f"all INT8 {fb['int8']:.2f}, "
        f"mixed {fb['final']:.2f} (drop {fb['drop']:.2f}; {fb['evaluations']} dev evaluations)."
        "\n\n"
    )


def to_markdown(report: dict[str, Any]) -> str:
    """The Markdown report: accuracy, speed, fallback and the ranked layer table."""
    view = _view(report)
    return (
        f"# Sensitivity of {report['model']} ({report['method']})\n\n"
        f"{view.intro(report)}; {report['seconds']:.0f} s in all.\n\n"
        f"## Accuracy\n\n{_accuracy_table(report)}\n"
        f"## Speed (same run)\n\n{_speed_table(report)}\n"
        f"{_fallback_text(report)}"
        "## Layers, most harmful first\n\n"
        "SQNR: INT8 layer output vs FP32 on calibration data. Only INT8: "
        f"{view.metric} change when only this layer is INT8. Only FP32: change when only this "
        "layer stays FP32. "
        "Harm = only FP32 - only INT8. Plots: `sensitivity.png`, `histograms.png`.\n\n"
        f"{_layer_table(report)}"
    )


def write_sensitivity_reports(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write the four report files into ``out_dir``; returns their paths."""
    return [
        write_json(out_dir / "sensitivity.json", report),
        write_text_atomic(out_dir / "sensitivity.md", to_markdown(report)),
        sensitivity_chart_png(out_dir / "sensitivity.png", report["layers"], _view(report).metric),
        histograms_png(out_dir / "histograms.png", report["histograms"]),
    ]
