"""The shared report helpers: Markdown tables and bar charts."""

from __future__ import annotations

import pytest

from eightbit.evaluate import report


@pytest.fixture
def axes(monkeypatch):
    """The bar chart's axes, captured when the figure is written."""
    seen = {}

    def capture(path, fig):
        seen["ax"] = fig.axes[0]
        return path

    monkeypatch.setattr(report, "write_figure_png", capture)
    return seen


@pytest.mark.parametrize(
    ("zoom", "bottom", "label"),
    [(False, 0.0, "accuracy %"), (True, 90.0, "accuracy % (axis from 90)")],
)
def test_bar_chart_axis_starts_at_zero_unless_zoomed(axes, tmp_path, zoom, bottom, label):
    values = [93.3, 93.8]
    report.bar_chart_png(
        tmp_path / "c.png", ["qat", "dynamic"], values, title="t", ylabel="accuracy %",
        reference=92.5, zoom=zoom,
    )  # fmt: skip
    ax = axes["ax"]
    assert ax.get_ylim()[0] == pytest.approx(bottom)
    assert ax.get_ylim()[1] > max(values)
    assert ax.get_ylabel() == label
