"""Markdown for the translation benchmark: one table per model, ratios within each beam."""

from __future__ import annotations

from typing import Any

from eightbit.evaluate.report import markdown_table

HEADERS = [
    "engine",
    "precision",
    "beam",
    "sentences",
    "tokens/s",
    "sentences/s",
    "BLEU",
    "vs HF FP32",
    "vs CT2 INT8",
]


def _speed_of(rows: list[dict[str, Any]], engine: str, precision: str, beam: int) -> float | None:
    for row in rows:
        if (row["engine"], row["precision"], row["beam"]) == (engine, precision, beam):
            return row["tokens_per_s"]
    return None


def _ratio(speed: float, reference: float | None) -> str:
    return f"{speed / reference:.2f}x" if reference else "-"


def _table(rows: list[dict[str, Any]]) -> str:
    cells = []
    for row in rows:
        speed = row["tokens_per_s"]
        beam = row["beam"]
        cells.append(
            [
                row["engine"],
                row["precision"].upper(),
                beam,
                row["sentences"],
                f"{speed:.1f}",
                f"{row['sentences_per_s']:.2f}",
                f"{row['bleu']:.2f}" if "bleu" in row else "-",
                _ratio(speed, _speed_of(rows, "hf", "fp32", beam)),
                _ratio(speed, _speed_of(rows, "ctranslate2", "int8", beam)),
            ]
        )
    return markdown_table(HEADERS, cells)


def to_markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        f"Translation benchmark: {report['threads']} threads in total, torch {machine['torch']}, "
        f"ctranslate2 {machine.get('ctranslate2', '-')}. tokens/s: generated target tokens "
        "(EOS included) per wall second, tokenization included; higher is better. "
        "`hf` INT8 is eightbit's INT8 model under Hugging Face `generate`.",
        "",
    ]
    for name, model in report["models"].items():
        rows = [r for r in report["results"] if r["model"] == name]
        lines += [
            f"**{name}**: {model['description']}; {model['sentences']} sentences; "
            f"INT8 {model['int8']}.",
            "",
            _table(rows),
        ]
        forced = [r for r in rows if r.get("at_forced_length") is False]
        if forced:
            engines = ", ".join(f"{r['engine']} {r['precision']} beam {r['beam']}" for r in forced)
            lines += [f"Stopped before the forced length (not comparable): {engines}.", ""]
    return "\n".join(lines).rstrip("\n") + "\n"
