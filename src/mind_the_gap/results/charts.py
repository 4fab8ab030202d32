"""Result charts described once, as data, and drawn twice, so the two never disagree: by
``mind_the_gap.results.figures`` as a matplotlib figure (the PNG of the Markdown report and of MLflow) and by
``mind_the_gap.results.interactive`` as a plotly figure (the HTML report, kedro-viz's preview). Colours and line
styles are matplotlib's ("C0", "--")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from mind_the_gap.analysis.statistics import mean_ci95

# Each source's colour wherever a chart shows it: its baseline students and the students that start from them.
SOURCE_COLOURS = {"real": "C0", "synthetic": "C3"}


@dataclass(frozen=True)
class Curve:
    """Means and their 95% CI half-widths along x: as error bars, or with ``band`` as a shaded band."""

    label: str
    x: list[float]
    mean: list[float]
    ci: list[float]
    colour: str
    style: str = "-"
    band: bool = False


@dataclass(frozen=True)
class Level:
    """A reference across the whole chart, as a baseline's mean, with its 95% CI as a band."""

    label: str
    mean: float
    ci: float
    colour: str
    style: str = ":"


# The values an accuracy can take: its axis stops there, however wide a 3-seed interval reaches.
ACCURACY_BOUNDS = (0.0, 1.0)


@dataclass(frozen=True)
class Panel:
    value_title: str  # a newline breaks it
    curves: list[Curve]
    levels: list[Level] = field(default_factory=list)
    bounds: tuple[float, float] | None = None  # the axis zooms to the data as always, but never past these

    def padded_bounds(self) -> tuple[float, float] | None:
        """The bounds with a small margin, so a marker on a bound is drawn whole."""
        if self.bounds is None:
            return None
        low, high = self.bounds
        margin = 0.02 * (high - low)
        return low - margin, high + margin


@dataclass(frozen=True)
class LineChart:
    """Panels stacked over one shared x axis."""

    title: str
    x_title: str
    panels: list[Panel]
    x_ticks: list[tuple[float, str]] = field(default_factory=list)  # position and label (a newline breaks it)
    log2_x: bool = False
    legend_at: str = "best"  # matplotlib's legend location; plotly places its legend itself
    size: tuple[float, float] = (8.0, 4.8)  # inches; the interactive figure is as high, 100 px an inch


@dataclass(frozen=True)
class Bars:
    """One group's horizontal bars, mean ± 95% CI, one per category."""

    label: str
    categories: list[str]
    mean: list[float]
    ci: list[float]
    colour: str


@dataclass(frozen=True)
class BarChart:
    """Groups of horizontal bars, their categories from top to bottom, with levels as vertical lines."""

    title: str
    value_title: str
    groups: list[Bars]
    levels: list[Level]
    value_range: tuple[float, float]
    size: tuple[float, float]
    order: list[str] = field(default_factory=list)  # the categories from top to bottom across groups; else by group

    @property
    def categories(self) -> list[str]:
        return self.order or [category for group in self.groups for category in group.categories]


Chart = LineChart | BarChart


def ci_or_zero(ci: float) -> float:
    """A CI half-width to draw: none (0) where there is none, as for a single seed."""
    return 0.0 if pd.isna(ci) else float(ci)


def table_curve(
    table: pd.DataFrame, x: str, metric: str, label: str, colour: str, style: str = "-", band: bool = False
) -> Curve:
    """A curve of ``<metric>_mean`` ± ``<metric>_ci95`` against the column ``x`` of a summary table."""
    return Curve(
        label,
        table[x].tolist(),
        table[f"{metric}_mean"].astype(float).tolist(),
        [ci_or_zero(ci) for ci in table[f"{metric}_ci95"]],
        colour,
        style,
        band,
    )


def runs_levels(runs: Mapping[str, pd.DataFrame]) -> list[Level]:
    """Per source (real, synthetic), its baseline students' test accuracy, mean ± 95% CI, from their runs tables."""
    levels = []
    for source, table in runs.items():
        mean, ci = mean_ci95(table["test_accuracy"].tolist())
        levels.append(Level(f"{source}-only", mean, ci_or_zero(ci), SOURCE_COLOURS[source]))
    return levels


def baseline_levels(reference: pd.DataFrame, labels: Mapping[str, str]) -> list[Level]:
    """The baseline students' test accuracy, mean ± 95% CI, from ``reference`` indexed by cell (real, synthetic)."""
    return [
        Level(
            label,
            float(reference.loc[cell, "test_accuracy_mean"]),
            ci_or_zero(reference.loc[cell, "test_accuracy_ci95"]),
            SOURCE_COLOURS[cell],
        )
        for cell, label in labels.items()
        if cell in reference.index
    ]
