"""Report writers: a Markdown table, JSON and PNG plots, all written atomically."""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eightbit.atomic import write_bytes_atomic, write_text_atomic


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; floats get 2 decimals unless already strings."""

    def cell(value: Any) -> str:
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=1, sort_keys=False) + "\n")


def pyplot() -> Any:
    """matplotlib's pyplot on the non-interactive Agg backend (imported only when plotting)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_figure_png(path: str | os.PathLike[str], fig: Any) -> Path:
    """Render ``fig`` to PNG, write it atomically, close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    pyplot().close(fig)
    return write_bytes_atomic(path, buffer.getvalue())


def bar_chart_png(
    path: str | os.PathLike[str],
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    ylabel: str,
    reference: float | None = None,
    reference_label: str = "FP32",
    zoom: bool = False,
) -> Path:
    """A bar chart (one bar per label) with an optional horizontal reference line.

    ``zoom`` starts the value axis a little below the lowest value instead of at 0, for
    metrics whose differences are small next to their size (accuracies in the 90s)."""
    fig, ax = pyplot().subplots(figsize=(max(6.0, 0.8 * len(labels) + 2), 4.0), dpi=110)
    bars = ax.bar(range(len(labels)), values, color="#4c72b0")
    digits = 2 if zoom else 1  # a zoomed axis shows differences of hundredths
    ax.bar_label(bars, labels=[f"{v:.{digits}f}" for v in values], fontsize=8)
    if reference is not None:
        ax.axhline(
            reference, color="#c44e52", linestyle="--", label=f"{reference_label} {reference:.2f}"
        )
        ax.legend(loc="upper right" if zoom else "lower right")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    if zoom and values:
        shown = [*values, reference] if reference is not None else list(values)
        bottom = max(0.0, math.floor(min(shown)) - 2.0)
        ax.set_ylim(bottom, max(shown) + 0.25 * (max(shown) - bottom))
        ylabel = f"{ylabel} (axis from {ax.get_ylim()[0]:g})"
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return write_figure_png(path, fig)
