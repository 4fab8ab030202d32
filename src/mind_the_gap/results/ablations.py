"""The ablations chart: test accuracy of every factor's variants, with the baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mind_the_gap.results.charts import BarChart, Bars, Level, ci_or_zero


def ablations_chart(summary: pd.DataFrame) -> BarChart:
    """Test accuracy of every row, grouped by factor, with the baselines as vertical lines."""
    groups = []
    for i, (factor, rows) in enumerate(summary.groupby("factor", sort=False)):
        labels = [f"{r.factor}: {r.variant} ({r.trained_on})" for r in rows.itertuples()]
        groups.append(
            Bars(
                factor,
                labels,
                rows["test_accuracy_mean"].astype(float).tolist(),
                [ci_or_zero(ci) for ci in rows["test_accuracy_ci95"]],
                f"C{i}",
            )
        )
    levels = []
    for source, style in (("real", "-"), ("synthetic", "--")):
        match = summary[(summary["factor"] == "baseline") & (summary["trained_on"] == source)]
        if len(match):
            mean, ci = match[["test_accuracy_mean", "test_accuracy_ci95"]].iloc[0]
            levels.append(Level(f"{source}-only", float(mean), ci_or_zero(ci), "k", style))
    low = np.nanmin(summary["test_accuracy_mean"]) if len(summary) else 0.0
    return BarChart(
        "Ablations: what each factor does to the gap",
        "test accuracy on real images (mean ± 95% CI over seeds)",
        groups,
        levels,
        (max(0.0, low - 0.1), 1.0),
        (8.0, 0.32 * len(summary) + 1.5),
    )
