"""Plots of the sensitivity report: per-layer sensitivity, and activation histograms with the
range every calibration method would choose."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eightbit.evaluate.report import pyplot, write_figure_png

METHOD_COLORS = {
    "minmax": "#000000",
    "kl-symmetric": "#c44e52",
    "kl-independent": "#55a868",
    "kl-conjugate": "#dd8452",
    "percentile": "#8172b3",
    "mse": "#4c72b0",
}


# the base-model attribute every module of a Marian or BERT-family model sits under
BASE_PREFIXES = ("model.", "bert.", "roberta.", "distilbert.", "electra.")


def short_name(name: str) -> str:
    """A layer name without its base-model prefix (``model.`` in Marian, ``bert.`` in BERT)."""
    for prefix in BASE_PREFIXES:
        if name.startswith(prefix):
            return name.removeprefix(prefix)
    return name


def sensitivity_chart_png(
    path: str | os.PathLike[str], layers: Sequence[dict[str, Any]], metric: str = "dev BLEU"
) -> Path:
    """Per layer (most harmful on top): ``metric`` change when only it is INT8 / only it is
    FP32, and its output SQNR in dB."""
    plt = pyplot()
    rows = list(reversed(layers))  # barh draws bottom-up
    names = [short_name(r["name"]) + (f" ({r['method']})" if r.get("method") else "") for r in rows]
    y = list(range(len(rows)))
    fig, (left, right) = plt.subplots(
        1,
        2,
        figsize=(12.0, 1.6 + 0.24 * len(rows)),
        dpi=100,
        sharey=True,
        gridspec_kw={"width_ratios": [3, 2]},
    )
    height = 0.4
    left.barh(
        [v + height / 2 for v in y],
        [r["only_fp32_delta"] or 0.0 for r in rows],
        height,
        color="#55a868",
        label="only this layer FP32 (vs all INT8)",
    )
    left.barh(
        [v - height / 2 for v in y],
        [r["only_int8_delta"] or 0.0 for r in rows],
        height,
        color="#c44e52",
        label="only this layer INT8 (vs FP32)",
    )
    left.axvline(0.0, color="#333333", linewidth=0.8)
    left.set_yticks(y, names, fontsize=8)
    left.set_xlabel(f"{metric} change")
    left.set_title("Task metric when one layer switches precision")
    left.legend(loc="lower right", fontsize=8)
    left.grid(axis="x", alpha=0.3)
    sqnr = [r["sqnr_db"] or 0.0 for r in rows]  # None: exact output
    right.barh(y, sqnr, color="#4c72b0")
    right.set_xlabel("output SQNR of the INT8 layer (dB, higher is better)")
    right.set_title("Layer output error on calibration data")
    right.grid(axis="x", alpha=0.3)
    left.set_ylim(-0.7, len(rows) - 0.3)
    fig.tight_layout()
    return write_figure_png(path, fig)


def _occupied(counts: list[int], edges: list[float]) -> tuple[list[float], list[int]]:
    nonzero = [i for i, c in enumerate(counts) if c]
    if not nonzero:
        return edges[:2], counts[:1]
    lo, hi = nonzero[0], nonzero[-1] + 1
    return edges[lo : hi + 1], counts[lo:hi]


def histograms_png(path: str | os.PathLike[str], histograms: dict[str, dict[str, Any]]) -> Path:
    """One panel per activation: its calibration histogram (log counts) and, as vertical
    lines, the ``[lo, hi]`` range each calibration method reads off it."""
    plt = pyplot()
    names = list(histograms)
    columns = 2 if len(names) > 1 else 1
    rows = max(1, math.ceil(len(names) / columns))
    fig, axes = plt.subplots(
        rows, columns, figsize=(6.5 * columns, 3.6 * rows), dpi=100, squeeze=False
    )
    for ax, name in zip(axes.flat, names, strict=False):
        view = histograms[name]
        edges, counts = _occupied(view["counts"], view["edges"])
        ax.stairs(counts, edges, fill=True, color="#b0b0b0")
        ax.set_yscale("log")
        for index, (method, (lo, hi)) in enumerate(view["thresholds"].items()):
            style = {
                "color": METHOD_COLORS.get(method, "#333333"),
                "linewidth": 1.2,
                "linestyle": ("-", "--", ":", "-.")[index % 4],
            }
            ax.axvline(hi, label=method, **style)
            if lo < 0.0:
                ax.axvline(lo, **style)
        ax.set_title(f"input of {short_name(name)}", fontsize=10)
        ax.set_xlabel("activation value")
        ax.set_ylabel("count (log)")
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="upper center",
        ncol=len(labels),
        fontsize=9,
        title="range chosen by each calibration method",
    )
    fig.tight_layout(rect=(0, 0, 1, 0.9 if rows == 1 else 0.94))
    return write_figure_png(path, fig)
