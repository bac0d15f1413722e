"""Markdown for the translation benchmark: one table per model, ratios within each beam."""

from __future__ import annotations

from typing import Any

from eightbit.data.parallel import AUTO_PROCESS_ITEMS
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


def _row_of(
    rows: list[dict[str, Any]], engine: str, precision: str, beam: int
) -> dict[str, Any] | None:
    return next(
        (r for r in rows if (r["engine"], r["precision"], r["beam"]) == (engine, precision, beam)),
        None,
    )


def _speed_of(rows: list[dict[str, Any]], engine: str, precision: str, beam: int) -> float | None:
    row = _row_of(rows, engine, precision, beam)
    return None if row is None else row["tokens_per_s"]


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


def _agreement_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One sentence on the eightbit engine against ``generate`` of the same model and beam."""
    parts = []
    for row in rows:
        same = row.get("same_as_hf")
        if same is None:
            continue
        hf = _row_of(rows, "hf", row["precision"], row["beam"])
        hf_bleu = None if hf is None else hf.get("bleu")
        part = (
            f"{row['precision'].upper()} beam {row['beam']} {same['identical']}/"
            f"{same['sentences']} identical"
        )
        if "bleu" in same and hf_bleu is not None:
            part += f", BLEU {same['bleu']:.2f} vs {hf_bleu:.2f}"
        parts.append(part)
    if not parts:
        return []
    return [
        "eightbit engine vs `hf` (`generate` of the same model and beam, on the sentences both "
        f"translated): {'; '.join(parts)}.",
        "",
    ]


_WORKERS = {
    "process": "forked processes",
    "thread": "threads",
    "auto": f"forked processes for {AUTO_PROCESS_ITEMS}+ batches per worker, else threads",
}


_KEPT = " (one `Translator` per engine and precision, its workers kept across the runs)"


def to_markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        f"Translation benchmark: {report['threads']} threads in total, torch {machine['torch']}, "
        f"ctranslate2 {machine.get('ctranslate2', '-')}. tokens/s: generated target tokens "
        "(EOS included) per wall second, tokenization included, median of "
        f"{report.get('repeats', 1)} runs taken in turns; higher is better. "
        "`hf` INT8 is eightbit's INT8 model under Hugging Face `generate`. eightbit and `hf` "
        f"workers: {_WORKERS.get(report.get('worker_kind', 'thread'))}"
        f"{_KEPT if report.get('workers_kept') else ''}; CTranslate2: its replicas.",
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
        lines += _agreement_lines(rows)
        forced = [r for r in rows if r.get("at_forced_length") is False]
        if forced:
            engines = ", ".join(f"{r['engine']} {r['precision']} beam {r['beam']}" for r in forced)
            lines += [f"Stopped before the forced length (not comparable): {engines}.", ""]
    return "\n".join(lines).rstrip("\n") + "\n"
