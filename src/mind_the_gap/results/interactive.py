"""Result charts as interactive plotly figures (the HTML report, kedro-viz's preview), and the pieces that put them
in a page that opens offline: plotly.js itself, and one div per figure."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import plotly.io as pio
from matplotlib.colors import to_hex, to_rgba
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from mind_the_gap.results.charts import BarChart, Chart, Curve, Level, LineChart

DASHES = {"-": "solid", "--": "dash", ":": "dot", "-.": "dashdot"}  # matplotlib's line styles in plotly
PIXELS_PER_INCH = 100
ALPHA_LEVEL, ALPHA_BAND = 0.12, 0.15  # as in the PNG
# Hover shows each point's mean and the half-width of its 95% CI, which the trace carries as customdata.
HOVER = "%{fullData.name}<br>%{x}: %{y:.4f} ± %{customdata:.4f}<extra></extra>"
HOVER_BARS = "%{y}<br>%{x:.4f} ± %{customdata:.4f}<extra></extra>"


def plotly_figure(chart: Chart) -> go.Figure:
    """The chart as a plotly figure, in the PNG's colours; every point's 95% CI shown and in its hover text."""
    figure = _bar_figure(chart) if isinstance(chart, BarChart) else _line_figure(chart)
    return figure.update_layout(
        title=chart.title,
        template="plotly_white",
        height=chart.size[1] * PIXELS_PER_INCH,
        legend={"font": {"size": 10}},
    )


def _line_figure(chart: LineChart) -> go.Figure:
    figure = make_subplots(rows=len(chart.panels), cols=1, shared_xaxes=True, vertical_spacing=0.04)
    for row, panel in enumerate(chart.panels, start=1):
        # Stacked panels share one legend: each panel's curves under its title.
        legend = {"legendgroup": f"panel{row}", "legendgrouptitle_text": _text(panel.value_title)}
        for curve in panel.curves:
            for trace in _curve_traces(curve, legend if len(chart.panels) > 1 else {}):
                figure.add_trace(trace, row=row, col=1)
        for level in panel.levels:  # drawn even on a panel without curves (a study whose cells have not run)
            place = {"row": row, "col": 1, "exclude_empty_subplots": False}
            figure.add_hrect(y0=level.mean - level.ci, y1=level.mean + level.ci, **_band(level), **place)
            figure.add_hline(y=level.mean, **_line(level), **place)
        bounds = panel.padded_bounds()
        autorange = {"autorangeoptions": {"minallowed": bounds[0], "maxallowed": bounds[1]}} if bounds else {}
        figure.update_yaxes(title_text=_text(panel.value_title), **autorange, row=row, col=1)
    x_axis: dict = {"title_text": chart.x_title}
    if chart.log2_x:
        x_axis |= {"type": "log", "dtick": math.log10(2)}  # a tick at every power of two
    if chart.x_ticks:
        x_axis |= {"tickvals": [p for p, _ in chart.x_ticks], "ticktext": [_text(t) for _, t in chart.x_ticks]}
    return figure.update_xaxes(**x_axis, row=len(chart.panels), col=1)


def _curve_traces(curve: Curve, legend: dict) -> list[go.Scatter]:
    legend = legend or {"legendgroup": curve.label}  # a band shows and hides with its line
    error = {} if curve.band else {"error_y": {"type": "data", "array": curve.ci, "visible": True}}
    line = go.Scatter(
        x=curve.x,
        y=curve.mean,
        customdata=curve.ci,
        name=curve.label,
        mode="lines+markers",
        line={"color": to_hex(curve.colour), "dash": DASHES[curve.style]},
        hovertemplate=HOVER,
        **error,
        **legend,
    )
    if not curve.band:
        return [line]
    upper = [m + c for m, c in zip(curve.mean, curve.ci, strict=True)]
    lower = [m - c for m, c in zip(curve.mean, curve.ci, strict=True)]
    band = go.Scatter(
        x=[*curve.x, *curve.x[::-1]],
        y=[*upper, *lower[::-1]],
        fill="toself",
        mode="lines",
        fillcolor=_rgba(curve.colour, ALPHA_BAND),
        line={"width": 0},
        hoverinfo="skip",
        showlegend=False,
        legendgroup=legend["legendgroup"],
    )
    return [band, line]


def _bar_figure(chart: BarChart) -> go.Figure:
    figure = go.Figure()
    for group in chart.groups:
        figure.add_trace(
            go.Bar(
                y=group.categories,
                x=group.mean,
                customdata=group.ci,
                orientation="h",
                name=group.label,
                marker_color=to_hex(group.colour),
                hovertemplate=HOVER_BARS,
                error_x={"type": "data", "array": group.ci, "visible": True},
            )
        )
    for level in chart.levels:
        figure.add_vrect(x0=level.mean - level.ci, x1=level.mean + level.ci, **_band(level))
        figure.add_vline(x=level.mean, **_line(level))
    # Categories listed from the bottom up: the first on top, as in the PNG.
    figure.update_yaxes(categoryorder="array", categoryarray=chart.categories[::-1], tickfont={"size": 10})
    return figure.update_xaxes(title_text=chart.value_title, range=list(chart.value_range))


def _band(level: Level) -> dict:
    return {"fillcolor": to_hex(level.colour), "opacity": ALPHA_LEVEL, "line_width": 0}


def _line(level: Level) -> dict:
    return {
        "line": {"color": to_hex(level.colour), "width": 1, "dash": DASHES[level.style]},
        "name": level.label,
        "showlegend": True,
    }


def _rgba(colour: str, alpha: float) -> str:
    red, green, blue, _ = to_rgba(colour)
    return f"rgba({255 * red:.0f},{255 * green:.0f},{255 * blue:.0f},{alpha})"


def _text(label: str) -> str:
    return label.replace("\n", "<br>")


def plotly_js() -> str:
    """plotly.js itself, to inline once in a page: nothing is fetched when it opens."""
    return get_plotlyjs()


def figure_div(figure: go.Figure, div_id: str) -> str:
    """A div that draws ``figure`` once plotly.js is on the page."""
    return pio.to_html(
        figure,
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    )
