"""A report rendered from its templates (``templates/report.html.j2``, ``templates/report.md.j2``): one
self-contained HTML page (figures embedded: interactive where there is a plotly figure, else the PNG) and a Markdown
twin (the PNGs linked), and the formatting of its tables' numbers."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from mind_the_gap.analysis.statistics import DELTA, FIELLER
from mind_the_gap.results.interactive import figure_div, plotly_js


@dataclass(frozen=True)
class Figure:
    """A figure of the report: its PNG, and where there is one its interactive version, which the HTML page shows
    instead (the Markdown twin links the PNG)."""

    caption: str
    png: Path
    interactive: go.Figure | None = None


@dataclass
class Section:
    """One experiment's part of the report; ``ran`` is False for a pipeline whose outputs are not there."""

    title: str
    pipeline: str
    ran: bool
    text: str = ""
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


@dataclass(frozen=True)
class Report:
    """A title, the headline table, then the sections."""

    title: str
    headline: pd.DataFrame
    sections: Sequence[Section]


def percent(mean: float, ci: float | None = None) -> str:
    """``89.32 % ± 0.37`` (accuracies in [0, 1]); a dash for a missing value."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{100 * mean:.2f} %"
    return text if ci is None or (isinstance(ci, float) and math.isnan(ci)) else f"{text} ± {100 * ci:.2f}"


def number(value: float) -> str:
    """Three significant digits, or a whole number with thousands separators from 100 on; a dash for a missing one."""
    if pd.isna(value):
        return "–"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"


def share(estimate: float, low: float = math.nan, high: float = math.nan, method: str = FIELLER) -> str:
    """``57 % (18 to 80)``: a share (in [0, 1], as a percentage) with its 95% interval, ``delta`` added where the
    delta method stands in for Fieller's; a dash for a missing share."""
    if pd.isna(estimate):
        return "–"
    text = f"{100 * estimate:.0f} %"
    if pd.isna(low) or pd.isna(high):
        return text
    return f"{text} ({100 * low:.0f} to {100 * high:.0f}{', delta' if method == DELTA else ''})"


def with_intervals(table: pd.DataFrame, keep: Sequence[str]) -> pd.DataFrame:
    """The ``keep`` columns of ``table``, each ``<metric>_mean`` with its ``<metric>_ci95`` as one ``mean ± ci`` text
    (accuracies as percentages), each share with its ``_low`` and ``_high`` as ``57 % (18 to 80)``, other numbers
    rounded."""
    out = pd.DataFrame(index=table.index)
    missing = pd.Series(math.nan, index=table.index)
    for column in keep:
        mean_column = f"{column}_mean" if f"{column}_mean" in table else column  # gap_pp_mean, or gap_pp itself
        if f"{column}_low" in table:
            ends = [table[column], table[f"{column}_low"], table[f"{column}_high"]]
            methods = table[f"{column}_method"] if f"{column}_method" in table else [FIELLER] * len(table)
            out[column] = [share(*values) for values in zip(*ends, methods, strict=True)]
        elif f"{column}_mean" in table or f"{column}_ci95" in table:
            mean, ci = table[mean_column], table.get(f"{column}_ci95", missing)
            if "accuracy" in column:
                out[column] = [percent(m, c) for m, c in zip(mean, ci, strict=True)]
            else:
                out[column] = [
                    number(m) + ("" if pd.isna(c) else f" ± {number(c)}") for m, c in zip(mean, ci, strict=True)
                ]
        elif column in table:
            out[column] = [number(v) if isinstance(v, float) else v for v in table[column]]
    return out.reset_index(drop=True)


_TEMPLATES = Environment(
    loader=PackageLoader("mind_the_gap.results", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_html(report: Report) -> str:
    """One self-contained page: tables inline, figures as plotly divs or embedded PNGs, and plotly.js inlined once
    where there is an interactive figure: nothing is fetched when it opens."""
    shown = [figure for section in report.sections if section.ran for figure in section.figures]
    interactive = any(figure.interactive is not None for figure in shown)
    return _TEMPLATES.get_template("report.html.j2").render(
        report=report,
        table=lambda table: Markup(table.to_html(index=False, escape=True, na_rep="–", border=0)),
        figure=_html_figure,
        plotly_js=Markup(plotly_js()) if interactive else None,
    )


def render_markdown(report: Report) -> str:
    """The same report in Markdown; figures linked by file name (they sit beside the report)."""
    return _TEMPLATES.get_template("report.md.j2").render(report=report, table=_markdown_table)


def _html_figure(figure: Figure) -> Markup | None:
    """The figure as plotly draws it, else its PNG's base64 data; None where neither is there."""
    if figure.interactive is not None:
        # The div's id names the figure by its PNG: sections' ids are the pipelines'.
        return Markup(figure_div(figure.interactive, div_id=f"figure-{figure.png.stem}"))
    if figure.png.is_file():
        return Markup('<img alt="{}" src="data:image/png;base64,{}">').format(
            figure.caption, base64.b64encode(figure.png.read_bytes()).decode()
        )
    return None


def _markdown_table(table: pd.DataFrame) -> str:
    """A pipe table of the cells as they print, a dash for a missing one (no number re-formatted)."""
    cells = table.map(lambda value: "–" if pd.isna(value) else str(value).replace("|", "\\|"))
    return cells.to_markdown(index=False, disable_numparse=True)
