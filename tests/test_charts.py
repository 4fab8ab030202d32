"""Result charts, described once and drawn twice: the matplotlib figure (the PNG) and the plotly figure (the
interactive report, kedro-viz's preview) show the same numbers."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from matplotlib.colors import to_hex

from mind_the_gap.charts import BarChart, Bars, Curve, Level, LineChart, Panel, baseline_levels, table_curve
from mind_the_gap.interactive import figure_div, plotly_figure
from mind_the_gap.reporting import matplotlib_figure

SUMMARY = pd.DataFrame(
    {
        "real_images": [250, 1000, 4000],
        "test_accuracy_mean": [0.75, 0.84, 0.89],
        "test_accuracy_ci95": [0.02, float("nan"), 0.002],
    }
)
REFERENCE = pd.DataFrame({"test_accuracy_mean": [0.893], "test_accuracy_ci95": [0.004]}, index=["real"])


def line_chart() -> LineChart:
    scratch = table_curve(SUMMARY, "real_images", "test_accuracy", "from scratch", "black", band=True)
    finetuned = Curve("last 2 fine-tuned", [250, 1000, 4000], [0.80, 0.83, 0.83], [0.02, 0.01, 0.0], "C2", "--")
    levels = baseline_levels(REFERENCE, {"real": "real-only", "synthetic": "synthetic-only"})
    return LineChart(
        "Data efficiency", "real images", [Panel("test accuracy", [scratch, finetuned], levels)], log2_x=True
    )


def test_a_summarys_curve_carries_its_means_and_cis_and_a_missing_ci_is_none():
    curve = table_curve(SUMMARY, "real_images", "test_accuracy", "from scratch", "black")
    assert curve.x == [250, 1000, 4000] and curve.mean == [0.75, 0.84, 0.89] and curve.ci == [0.02, 0.0, 0.002]
    assert baseline_levels(REFERENCE, {"real": "real-only", "synthetic": "synthetic-only"}) == [
        Level("real-only", 0.893, 0.004, "C0")
    ]  # the synthetic students are not in the reference: no level


def test_plotly_draws_curves_with_their_ci_as_error_bars_or_bands_and_levels_as_lines():
    figure = plotly_figure(line_chart())
    band, scratch, finetuned = figure.data
    assert scratch.name == "from scratch" and scratch.y == (0.75, 0.84, 0.89) and scratch.error_y.array is None
    assert band.fill == "toself" and band.x == (250, 1000, 4000, 4000, 1000, 250)
    assert band.y == pytest.approx((0.77, 0.84, 0.892, 0.888, 0.84, 0.73))
    assert finetuned.error_y.array == (0.02, 0.01, 0.0) and finetuned.customdata == (0.02, 0.01, 0.0)
    assert finetuned.line.color == to_hex("C2") and finetuned.line.dash == "dash"  # the PNG's colour and style
    line, rect = sorted(figure.layout.shapes, key=lambda shape: shape.type)
    assert line.name == "real-only" and line.showlegend and line.y0 == line.y1 == 0.893
    assert (rect.y0, rect.y1) == pytest.approx((0.889, 0.897))
    assert figure.layout.xaxis.type == "log" and figure.layout.xaxis.dtick == pytest.approx(math.log10(2))
    assert figure.layout.title.text == "Data efficiency" and figure.layout.height == 480
    assert "bdata" not in figure.to_json()  # plain lists: any plotly.js reads them, kedro-viz's included


def test_matplotlib_draws_the_same_curves_and_levels():
    (axes,) = matplotlib_figure(line_chart()).axes
    assert [text.get_text() for text in axes.get_legend().get_texts()] == [
        "real-only",
        "from scratch",
        "last 2 fine-tuned",
    ]
    assert list(axes.lines[0].get_ydata()) == [0.893, 0.893]  # the level
    assert list(axes.lines[1].get_ydata()) == [0.75, 0.84, 0.89] and axes.get_xscale() == "log"


def test_stacked_panels_share_the_x_axis_and_each_has_its_legend_group():
    chart = LineChart(
        "Per unit",
        "unit",
        [
            Panel("CKA", [Curve("real vs synthetic", [0, 1], [0.9, 0.8], [0, 0], "C4")]),
            Panel("probe\naccuracy", [Curve("real", [0, 1], [0.6, 0.7], [0, 0], "C0")]),
        ],
        x_ticks=[(0, "0\nstem"), (1, "1\nblock1")],
        size=(8.0, 8.0),
    )
    figure = plotly_figure(chart)
    cka, probe = figure.data
    assert (cka.yaxis, probe.yaxis) == ("y", "y2") and probe.legendgrouptitle.text == "probe<br>accuracy"
    assert figure.layout.xaxis2.ticktext == ("0<br>stem", "1<br>block1") and figure.layout.xaxis.matches == "x2"
    assert len(matplotlib_figure(chart).axes) == 2


def test_bars_run_from_the_first_category_on_top_with_their_ci():
    chart = BarChart(
        "Ablations",
        "test accuracy",
        [
            Bars("baseline", ["real", "synthetic"], [0.89, 0.8], [0.004, 0.01], "C0"),
            Bars("mixing", ["50% real"], [0.87], [0.006], "C1"),
        ],
        [Level("real-only", 0.89, 0.004, "k", "-")],
        (0.7, 1.0),
        (8.0, 2.5),
    )
    figure = plotly_figure(chart)
    baseline, mixing = figure.data
    assert baseline.orientation == "h" and baseline.x == (0.89, 0.8) and baseline.error_x.array == (0.004, 0.01)
    assert mixing.y == ("50% real",) and figure.layout.yaxis.categoryarray == ("50% real", "synthetic", "real")
    assert figure.layout.xaxis.range == (0.7, 1.0)
    assert [shape.x0 for shape in figure.layout.shapes if shape.type == "line"] == [0.89]
    (axes,) = matplotlib_figure(chart).axes
    assert [label.get_text() for label in axes.get_yticklabels()] == ["50% real", "synthetic", "real"]  # bottom up


def test_a_figure_div_draws_its_figure_once_plotly_js_is_on_the_page():
    div = figure_div(plotly_figure(line_chart()), div_id="data_efficiency")
    assert 'id="data_efficiency"' in div and "Plotly.newPlot" in div and "plotly.js" not in div
