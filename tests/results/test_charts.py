"""Result charts, described once and drawn twice: the matplotlib figure (the PNG) and the plotly figure (the
interactive report, kedro-viz's preview) show the same numbers."""

from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.text import Text

from mind_the_gap.results.charts import (
    ACCURACY_BOUNDS,
    BarChart,
    Bars,
    Curve,
    Level,
    LineChart,
    Panel,
    baseline_levels,
    table_curve,
)
from mind_the_gap.results.figures import matplotlib_figure
from mind_the_gap.results.interactive import figure_div, plotly_figure

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
    assert curve.x == [250, 1000, 4000]
    assert curve.mean == [0.75, 0.84, 0.89]
    assert curve.ci == [0.02, 0.0, 0.002]
    assert baseline_levels(REFERENCE, {"real": "real-only", "synthetic": "synthetic-only"}) == [
        Level("real-only", 0.893, 0.004, "C0")
    ]  # the synthetic students are not in the reference: no level


def test_plotly_draws_curves_with_their_ci_as_error_bars_or_bands_and_levels_as_lines():
    figure = plotly_figure(line_chart())
    band, scratch, finetuned = figure.data
    assert scratch.name == "from scratch"
    assert scratch.y == (0.75, 0.84, 0.89)
    assert scratch.error_y.array is None  # its CI is the band
    assert band.fill == "toself"
    assert band.x == (250, 1000, 4000, 4000, 1000, 250)
    assert band.y == pytest.approx((0.77, 0.84, 0.892, 0.888, 0.84, 0.73))
    assert band.showlegend is False
    assert finetuned.error_y.array == (0.02, 0.01, 0.0)
    assert finetuned.customdata == (0.02, 0.01, 0.0)  # the hover text's CI
    assert finetuned.line.color == to_hex("C2")  # the PNG's colour and style
    assert finetuned.line.dash == "dash"
    line, rect = sorted(figure.layout.shapes, key=lambda shape: shape.type)
    assert line.name == "real-only"
    assert line.showlegend
    assert (line.y0, line.y1) == (0.893, 0.893)
    assert (rect.y0, rect.y1) == pytest.approx((0.889, 0.897))
    assert figure.layout.xaxis.type == "log"
    assert figure.layout.xaxis.dtick == pytest.approx(math.log10(2))
    assert figure.layout.xaxis.title.text == "real images"
    assert figure.layout.yaxis.title.text == "test accuracy"
    assert figure.layout.title.text == "Data efficiency"
    assert figure.layout.height == 480
    assert "bdata" not in figure.to_json()  # plain lists: any plotly.js reads them, kedro-viz's included


def test_matplotlib_draws_the_same_curves_and_levels():
    figure = matplotlib_figure(line_chart())
    (axes,) = figure.axes
    assert figure.get_suptitle() == "Data efficiency"
    assert axes.get_xlabel() == "real images"
    assert axes.get_ylabel() == "test accuracy"
    assert [text.get_text() for text in axes.get_legend().get_texts()] == [
        "real-only",
        "from scratch",
        "last 2 fine-tuned",
    ]
    level, scratch = axes.lines[:2]
    assert list(level.get_ydata()) == [0.893, 0.893]
    assert list(scratch.get_xdata()) == [250, 1000, 4000]
    assert list(scratch.get_ydata()) == [0.75, 0.84, 0.89]
    (finetuned,) = axes.containers  # error bars: the line, its caps and its bars
    finetuned_line, (lower_caps, upper_caps), _ = finetuned
    assert finetuned.get_label() == "last 2 fine-tuned"
    assert list(finetuned_line.get_ydata()) == [0.80, 0.83, 0.83]
    assert list(upper_caps.get_ydata()) == pytest.approx([0.82, 0.84, 0.83])
    assert list(lower_caps.get_ydata()) == pytest.approx([0.78, 0.82, 0.83])
    assert finetuned_line.get_color() == "C2"
    assert finetuned_line.get_linestyle() == "--"
    assert axes.get_xscale() == "log"
    assert list(figure.get_size_inches()) == [8.0, 4.8]


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
    assert (cka.yaxis, probe.yaxis) == ("y", "y2")
    assert probe.legendgrouptitle.text == "probe<br>accuracy"
    assert figure.layout.yaxis2.title.text == "probe<br>accuracy"
    assert figure.layout.xaxis2.ticktext == ("0<br>stem", "1<br>block1")
    assert figure.layout.xaxis.matches == "x2"
    top, bottom = matplotlib_figure(chart).axes
    assert [top.get_ylabel(), bottom.get_ylabel()] == ["CKA", "probe\naccuracy"]
    assert [container.get_label() for container in top.containers] == ["real vs synthetic"]
    assert list(bottom.containers[0].lines[0].get_ydata()) == [0.6, 0.7]
    assert [label.get_text() for label in bottom.get_xticklabels()] == ["0\nstem", "1\nblock1"]
    assert bottom.get_shared_x_axes().joined(top, bottom)


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
    assert baseline.orientation == "h"
    assert baseline.x == (0.89, 0.8)
    assert baseline.error_x.array == (0.004, 0.01)
    assert mixing.y == ("50% real",)
    assert figure.layout.yaxis.categoryarray == ("50% real", "synthetic", "real")
    assert figure.layout.xaxis.range == (0.7, 1.0)
    assert [shape.x0 for shape in figure.layout.shapes if shape.type == "line"] == [0.89]
    (axes,) = matplotlib_figure(chart).axes
    assert [label.get_text() for label in axes.get_yticklabels()] == ["50% real", "synthetic", "real"]  # bottom up
    bars = [
        bar for container in axes.containers if container.get_label() in ("baseline", "mixing") for bar in container
    ]
    assert [bar.get_width() for bar in bars] == [0.89, 0.8, 0.87]
    assert [bar.get_y() + bar.get_height() / 2 for bar in bars] == [2, 1, 0]  # real on top, 50% real at the bottom
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["real-only", "baseline", "mixing"]
    assert axes.get_xlim() == (0.7, 1.0)
    assert axes.get_xlabel() == "test accuracy"


def test_a_figure_div_draws_its_figure_once_plotly_js_is_on_the_page():
    div = figure_div(plotly_figure(line_chart()), div_id="data_efficiency")
    assert 'id="data_efficiency"' in div
    assert "Plotly.newPlot" in div
    assert "plotly.js" not in div  # inlined once per page, not per figure


@pytest.mark.parametrize("kind", ["line", "bar"])
def test_a_long_title_is_wrapped_inside_the_png_above_the_axes(kind: str):
    title = "Test accuracy of each lever's synthetic students and of their headline swaps, beside the baselines " * 2
    if kind == "line":
        chart = replace(line_chart(), title=title, size=(5.0, 3.0))
    else:
        chart = BarChart(
            title, "test accuracy", [Bars("a", ["a long category name"], [0.8], [0.01], "C0")], [], (0, 1), (5.0, 3.0)
        )
    figure = matplotlib_figure(chart)
    figure.canvas.draw()
    text = figure.get_suptitle()
    assert text.replace("\n", " ") == title.strip()
    assert text.count("\n") >= 3
    (drawn,) = [label.get_window_extent() for label in figure.findobj(Text) if label.get_text() == text]
    page = figure.bbox
    assert page.x0 <= drawn.x0
    assert drawn.x1 <= page.x1
    assert drawn.y1 <= page.y1
    assert drawn.y0 >= max(axes.get_window_extent().y1 for axes in figure.axes)


@pytest.mark.parametrize("bounds", [ACCURACY_BOUNDS, None])
def test_a_bounded_panel_zooms_to_its_data_but_never_past_its_bounds(bounds: tuple[float, float] | None):
    # Three seeds' t-interval can reach past 100 %: a bounded accuracy axis stops just above 1 all the same.
    wide = Curve("stitched", [1, 2, 3], [0.62, 0.8, 0.84], [0.59, 0.03, 0.01], "C0")
    chart = LineChart("Stitching", "cut", [Panel("test accuracy", [wide], bounds=bounds)])
    low, high = matplotlib_figure(chart).axes[0].get_ylim()
    autorange = plotly_figure(chart).layout.yaxis.autorangeoptions
    if bounds is None:
        assert high > 1.2  # matplotlib's own limits: the interval's 1.21 and a margin
        assert autorange.maxallowed is None
    else:
        assert high == pytest.approx(1.02)
        assert low == pytest.approx(-0.02)  # the interval's 0.03 less the axis' margin, held at the bound's
        assert (autorange.minallowed, autorange.maxallowed) == pytest.approx((-0.02, 1.02))
    narrow = Curve("real", [1, 2], [0.80, 0.84], [0.01, 0.01], "C0")
    zoomed = LineChart("Swap", "cut", [Panel("test accuracy", [narrow], bounds=bounds)])
    low, high = matplotlib_figure(zoomed).axes[0].get_ylim()
    assert 0.7 < low < 0.8  # the bounds never widen a narrow axis
    assert 0.85 < high < 0.9
