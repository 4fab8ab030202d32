"""The data-efficiency chart: test accuracy against the real images used."""

from __future__ import annotations

import pandas as pd

from mind_the_gap.results.charts import LineChart, Panel, baseline_levels, table_curve


def data_efficiency_chart(summary: pd.DataFrame, reference: pd.DataFrame) -> LineChart:
    """Test accuracy against the number of real images used, one line per strategy with its 95% CI band."""
    curves = []
    for i, (strategy, group) in enumerate(summary.groupby("strategy", sort=False)):
        scratch = strategy.startswith("scratch")
        colour, style = ("black", "-" if strategy == "scratch" else ":") if scratch else (f"C{i + 1}", "-")
        label = f"synthetic student, {strategy} units fine-tuned"
        if scratch:
            label = "from scratch on the subset" if strategy == "scratch" else f"{strategy} (convergence check)"
        points = group.sort_values("real_images")
        curves.append(table_curve(points, "real_images", "test_accuracy", label, colour, style, band=True))
    levels = baseline_levels(
        reference, {"real": "real-only, every real image", "synthetic": "synthetic-only, no real image"}
    )
    return LineChart(
        "Data efficiency: fine-tuning the last units on a little real data",
        "real training images used",
        [Panel("test accuracy on real images", curves, levels)],
        log2_x=True,
        legend_at="lower right",
        size=(7.5, 4.8),
    )
