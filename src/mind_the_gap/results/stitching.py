"""The stitching chart: test accuracy of the stitched students against cut, one line per arrangement."""

from __future__ import annotations

import pandas as pd

from mind_the_gap.results.charts import ACCURACY_BOUNDS, SOURCE_COLOURS, LineChart, Panel, runs_levels, table_curve

# real-real and synthetic-synthetic solid in their sources' colours; the cross-source arrangements dashed.
STYLES = {
    "real_to_real": (SOURCE_COLOURS["real"], "-"),
    "real_to_synthetic": ("C1", "--"),
    "synthetic_to_real": ("C2", "--"),
    "synthetic_to_synthetic": (SOURCE_COLOURS["synthetic"], "-"),
}


def stitching_chart(summary: pd.DataFrame, real_runs: pd.DataFrame, synthetic_runs: pd.DataFrame) -> LineChart:
    """Per arrangement, the stitched students' test accuracy (mean ± 95% CI over seeds) against the cut; the real-only
    and synthetic-only baseline students as horizontal bands."""
    curves = []
    for arrangement, rows in summary.groupby("arrangement", sort=False):
        bottom, top = rows["bottom"].iloc[0], rows["top"].iloc[0]
        label = f"units 0..k-1 of a {bottom} student, k..last of a {top} student"
        colour, style = STYLES.get(arrangement, ("C7", ":"))
        curves.append(table_curve(rows.sort_values("cut"), "cut", "test_accuracy", label, colour, style))
    levels = runs_levels({"real": real_runs, "synthetic": synthetic_runs})
    cuts = sorted(set(summary["cut"].tolist()))
    return LineChart(
        "Stitching: can one student's upper units read another's features?",
        "cut k (the first unit of the top student)",
        [Panel("test accuracy on real images", curves, levels, ACCURACY_BOUNDS)],
        [(k, str(k)) for k in cuts],
        legend_at="lower right",
    )
