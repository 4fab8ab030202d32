"""The layer-swap chart: test accuracy against cut."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mind_the_gap.experiments.layer_swap import OTHER
from mind_the_gap.results.charts import SOURCE_COLOURS, Curve, LineChart, Panel, baseline_levels, ci_or_zero


def layer_swap_chart(summary: pd.DataFrame, baselines: pd.DataFrame, names: list[str]) -> LineChart:
    """Test accuracy against cut, one line per arrangement and source; the baselines as horizontal bands.

    A line's ends are baselines too: cutting before unit 0 or after the last unit keeps everything or nothing.
    """
    n = len(names)
    curves = []
    for (arrangement, source), group in summary.groupby(["arrangement", "from"], sort=False):
        other = OTHER[source]
        ends = {0: other, n: source} if arrangement == "prefix" else {0: source, n: other}
        points = group.sort_values("cut")
        cuts = [0, *points["cut"].tolist(), n]
        means = [_mean(baselines, ends[0]), *points["test_accuracy_mean"].tolist(), _mean(baselines, ends[n])]
        cis = [0.0, *map(ci_or_zero, points["test_accuracy_ci95"]), 0.0]
        kept = "units 0..k-1" if arrangement == "prefix" else "units k..last"
        label = f"{kept} kept from the {source} student, the rest trained on {other}"
        style = "-" if arrangement == "prefix" else "--"
        curves.append(Curve(label, cuts, means, cis, SOURCE_COLOURS[source], style))
    levels = baseline_levels(baselines, {"real": "real-only", "synthetic": "synthetic-only"})
    ticks = [(k, str(k) if k in (0, n) else f"{k}\n{names[k]}") for k in range(n + 1)]
    panel = Panel("test accuracy on real images", curves, levels)
    return LineChart(
        "Layer swap: which units carry the gap",
        "cut k (the first unit after it)",
        [panel],
        ticks,
        legend_at="lower center",
    )


def _mean(baselines: pd.DataFrame, cell: str) -> float:
    return float(baselines.loc[cell, "test_accuracy_mean"]) if cell in baselines.index else np.nan
