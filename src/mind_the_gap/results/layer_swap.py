"""The layer-swap chart: test accuracy against cut."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mind_the_gap.results.charts import (
    ACCURACY_BOUNDS,
    SOURCE_COLOURS,
    Curve,
    LineChart,
    Panel,
    baseline_levels,
    ci_or_zero,
)

# Line styles: prefixes solid, suffixes dashed; their same-source controls dash-dotted and dotted.
STYLES = {("prefix", False): "-", ("suffix", False): "--", ("prefix", True): "-.", ("suffix", True): ":"}


def layer_swap_chart(summary: pd.DataFrame, baselines: pd.DataFrame, names: list[str]) -> LineChart:
    """Test accuracy against cut, one line per arrangement, source and source of the retrained units: the
    cross-source cells in one panel, the same-source controls (where they ran) in a second; the baselines as
    horizontal bands in both.

    A line's ends are baselines too: cutting before unit 0 or after the last unit keeps everything or nothing.
    """
    n = len(names)
    curves: dict[bool, list[Curve]] = {False: [], True: []}
    for (arrangement, source, trained_on), group in summary.groupby(["arrangement", "from", "trained_on"], sort=False):
        ends = {0: trained_on, n: source} if arrangement == "prefix" else {0: source, n: trained_on}
        points = group.sort_values("cut")
        cuts = [0, *points["cut"].tolist(), n]
        means = [_mean(baselines, ends[0]), *points["test_accuracy_mean"].tolist(), _mean(baselines, ends[n])]
        cis = [0.0, *map(ci_or_zero, points["test_accuracy_ci95"]), 0.0]
        kept = "units 0..k-1" if arrangement == "prefix" else "units k..last"
        control = trained_on == source
        rest = f"the rest retrained on {trained_on}" if control else f"the rest trained on {trained_on}"
        label = f"{kept} kept from the {source} student, {rest}"
        curves[control].append(Curve(label, cuts, means, cis, SOURCE_COLOURS[source], STYLES[arrangement, control]))
    levels = baseline_levels(baselines, {"real": "real-only", "synthetic": "synthetic-only"})
    ticks = [(k, str(k) if k in (0, n) else f"{k}\n{names[k]}") for k in range(n + 1)]
    panels = [Panel("test accuracy on real images", curves[False], levels, ACCURACY_BOUNDS)]
    if curves[True]:
        panels.append(
            Panel("same-source controls:\ntest accuracy on real images", curves[True], levels, ACCURACY_BOUNDS)
        )
    return LineChart(
        "Layer swap: which units carry the gap",
        "cut k (the first unit after it)",
        panels,
        ticks,
        legend_at="lower center",
        size=(8.0, 4.8 * len(panels)),
    )


def _mean(baselines: pd.DataFrame, cell: str) -> float:
    return float(baselines.loc[cell, "test_accuracy_mean"]) if cell in baselines.index else np.nan
