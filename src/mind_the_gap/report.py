"""The study's report: the headline beside the paper's figures, then one section per experiment, as one
self-contained HTML file (figures embedded: interactive where there is a plotly figure, else the PNG) and a Markdown
twin (the PNGs linked)."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from mind_the_gap.interactive import figure_div, plotly_js

# The paper's figures (ImageNet-100, ResNet-50; from its abstract and summaries).
PAPER = {
    "real": 0.878,
    "synthetic": 0.648,
    "last_units_recovered_pp": 18.4,  # units 15-17 trained on real data, the rest on synthetic
    "one_eighth_below_real_pp": 4.2,  # last 2 units fine-tuned on 1/8 of the real data
}


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


def percent(mean: float, ci: float | None = None) -> str:
    """``89.32 % ± 0.37`` (accuracies in [0, 1]); a dash for a missing value."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{100 * mean:.2f} %"
    return text if ci is None or (isinstance(ci, float) and math.isnan(ci)) else f"{text} ± {100 * ci:.2f}"


def with_intervals(table: pd.DataFrame, keep: Sequence[str]) -> pd.DataFrame:
    """The ``keep`` columns of ``table``, each ``<metric>_mean`` with its ``<metric>_ci95`` as one ``mean ± ci`` text
    (accuracies as percentages), other numbers rounded."""
    out = pd.DataFrame(index=table.index)
    for column in keep:
        mean_column = f"{column}_mean" if f"{column}_mean" in table else column  # gap_pp_mean, or gap_pp itself
        if f"{column}_mean" in table or f"{column}_ci95" in table:
            mean, ci = table[mean_column], table.get(f"{column}_ci95", pd.Series(math.nan, index=table.index))
            if "accuracy" in column:
                out[column] = [percent(m, c) for m, c in zip(mean, ci, strict=True)]
            else:
                out[column] = [
                    _number(m) + ("" if pd.isna(c) else f" ± {_number(c)}") for m, c in zip(mean, ci, strict=True)
                ]
        elif column in table:
            out[column] = [_number(v) if isinstance(v, float) else v for v in table[column]]
    return out.reset_index(drop=True)


def _number(value: float) -> str:
    if pd.isna(value):
        return "–"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"


def headline(
    baselines: pd.DataFrame | None, layer_swap: pd.DataFrame | None, data_efficiency: pd.DataFrame | None
) -> pd.DataFrame:
    """The paper's four figures beside this run's (a dash where the experiment has not run)."""
    accuracy = {}
    if baselines is not None:
        rows = baselines.set_index("cell")
        columns = ["test_accuracy_mean", "test_accuracy_ci95", "n"]
        accuracy = {cell: tuple(rows.loc[cell, columns]) for cell in ("real", "synthetic") if cell in rows.index}
    rows = []
    for cell in ("real", "synthetic"):
        mean, ci, n = accuracy.get(cell, (math.nan, math.nan, 0))
        rows.append(
            {
                "figure": f"{cell}-only test accuracy",
                "paper": percent(PAPER[cell]),
                "this run": percent(mean, ci) + (f" (n={int(n)} seeds)" if n else ""),
            }
        )
    gap = 100 * (accuracy["real"][0] - accuracy["synthetic"][0]) if len(accuracy) == 2 else math.nan
    rows.append(
        {
            "figure": "gap (points)",
            "paper": f"{100 * (PAPER['real'] - PAPER['synthetic']):.1f}",
            "this run": _number(gap),
        }
    )
    recovered = "–"
    if layer_swap is not None and "synthetic" in accuracy:
        last = layer_swap[(layer_swap["arrangement"] == "prefix") & (layer_swap["from"] == "synthetic")]
        if len(last):
            row = last.loc[last["cut"].astype(float).idxmax()]
            gained = 100 * (row["test_accuracy_mean"] - accuracy["synthetic"][0])
            recovered = f"+{gained:.1f} (units {row['trained']}: {100 * row['gap_recovered']:.0f} % of the gap)"
    rows.append(
        {
            "figure": "last units trained on real data, the rest kept from the synthetic student (points)",
            "paper": f"+{PAPER['last_units_recovered_pp']} (units 15-17: 80 % of the gap)",
            "this run": recovered,
        }
    )
    below = "–"
    if data_efficiency is not None:
        match = data_efficiency[
            (data_efficiency["strategy"] == "last 2") & (data_efficiency["fraction_label"].astype(str) == "1/8")
        ]
        if len(match):
            below = f"{match['below_real_pp'].iloc[0]:.1f} below real-only"
    rows.append(
        {
            "figure": "last 2 units fine-tuned on 1/8 of the real data (points)",
            "paper": f"{PAPER['one_eighth_below_real_pp']} below real-only",
            "this run": below,
        }
    )
    return pd.DataFrame(rows)


def render_html(title: str, summary: pd.DataFrame, sections: Sequence[Section]) -> str:
    """One self-contained page: tables inline, figures as plotly divs or embedded PNGs, and plotly.js inlined once
    where there is an interactive figure: nothing is fetched when it opens."""
    parts = [f"<h1>{html.escape(title)}</h1>", "<h2>Headline</h2>", _html_table(summary)]
    for section in sections:
        parts.append(f'<h2 id="{section.pipeline}">{html.escape(section.title)}</h2>')
        if not section.ran:
            parts.append(
                f"<p class='not-run'>Not run: <code>kedro run --pipeline {section.pipeline}</code> "
                "writes this section.</p>"
            )
            continue
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        for caption, table in section.tables:
            parts += [f"<h3>{html.escape(caption)}</h3>", _html_table(table)]
        parts += [_html_figure(figure) for figure in section.figures]
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}"
        "td,th{border:1px solid #ccc;padding:0.25em 0.6em;text-align:left}th{background:#f3f3f3}"
        "img{max-width:100%}.not-run{color:#a33}figcaption{font-size:0.85em;color:#555}"
    )
    shown = [figure for section in sections if section.ran for figure in section.figures]
    script = f"<script>{plotly_js()}</script>" if any(f.interactive is not None for f in shown) else ""
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style>{script}</head><body>{''.join(parts)}</body></html>\n"
    )


def render_markdown(title: str, summary: pd.DataFrame, sections: Sequence[Section]) -> str:
    """The same report in Markdown; figures linked by file name (they sit beside the report)."""
    lines = [f"# {title}", "", "## Headline", "", _markdown_table(summary), ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        if not section.ran:
            lines += [f"Not run: `kedro run --pipeline {section.pipeline}` writes this section.", ""]
            continue
        if section.text:
            lines += [section.text, ""]
        for caption, table in section.tables:
            lines += [f"### {caption}", "", _markdown_table(table), ""]
        lines += [f"![{figure.caption}]({figure.png.name})\n" for figure in section.figures if figure.png.is_file()]
    return "\n".join(lines)


def _html_figure(figure: Figure) -> str:
    """The figure as plotly draws it, else its PNG embedded; nothing where neither is there."""
    caption = html.escape(figure.caption)
    if figure.interactive is not None:
        drawn = figure_div(figure.interactive, div_id=f"figure-{figure.png.stem}")  # sections' ids are the pipelines'
    elif figure.png.is_file():
        data = base64.b64encode(figure.png.read_bytes()).decode()
        drawn = f"<img alt='{caption}' src='data:image/png;base64,{data}'>"
    else:
        return ""
    return f"<figure>{drawn}<figcaption>{caption}</figcaption></figure>"


def _html_table(table: pd.DataFrame) -> str:
    return table.to_html(index=False, escape=True, na_rep="–", border=0)


def _markdown_table(table: pd.DataFrame) -> str:
    cells = [[str(v).replace("|", "\\|") for v in row] for row in table.fillna("–").itertuples(index=False)]
    lines = [list(map(str, table.columns)), ["---"] * len(table.columns), *cells]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)
