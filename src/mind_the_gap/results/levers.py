"""The levers chart: each lever's synthetic students and their headline layer-swap students, with the baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mind_the_gap.analysis.statistics import mean_ci95
from mind_the_gap.results.charts import SOURCE_COLOURS, BarChart, Bars, Level, ci_or_zero


def levers_chart(summary: pd.DataFrame, real_runs: pd.DataFrame) -> BarChart:
    """Per lever and variant two bars, its students and the headline swap from them; the real-only and
    synthetic-only students as vertical lines."""
    groups = []
    for i, (lever, rows) in enumerate(summary.groupby("lever", sort=False)):
        categories, means, cis = [], [], []
        for row in rows.to_dict("records"):
            categories += [
                f"{lever}: {row['variant']}",
                f"{lever}: {row['variant']}, units after {row['swap_kept']} on real",
            ]
            means += [row["test_accuracy_mean"], row.get("swap_accuracy_mean", np.nan)]
            cis += [ci_or_zero(row["test_accuracy_ci95"]), ci_or_zero(row.get("swap_accuracy_ci95", np.nan))]
        groups.append(Bars(lever, categories, means, cis, f"C{i}"))
    real_mean, real_ci = mean_ci95(real_runs["test_accuracy"].tolist())
    baseline = summary.iloc[0]
    levels = [
        Level("real-only", real_mean, ci_or_zero(real_ci), SOURCE_COLOURS["real"], "-"),
        Level(
            "synthetic-only",
            baseline["test_accuracy_mean"],
            ci_or_zero(baseline["test_accuracy_ci95"]),
            SOURCE_COLOURS["synthetic"],
            "--",
        ),
    ]
    low = np.nanmin([*summary["test_accuracy_mean"], *summary.get("swap_accuracy_mean", [])])
    return BarChart(
        "Levers: the gap after each, and the last units on real data",
        "test accuracy on real images (mean ± 95% CI over seeds)",
        groups,
        levels,
        (max(0.0, low - 0.1), 1.0),
        (8.0, 0.32 * 2 * len(summary) + 1.5),
    )
