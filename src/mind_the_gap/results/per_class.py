"""The per-class gaps chart: each class's real-vs-synthetic gap, the largest on top, coloured by how many of its
synthetic images the real-trained judges recognise."""

from __future__ import annotations

import pandas as pd

from mind_the_gap.results.charts import BarChart, Bars, ci_or_zero

# Recognisability bands (lower end, label, colour): the classes the generator renders worst stand out in red.
BANDS = ((0.0, "recognised < 50 %", "C3"), (0.5, "50-80 %", "C1"), (0.8, "≥ 80 %", "C0"))


def per_class_chart(table: pd.DataFrame) -> BarChart:
    """Bars of ``per_class_gaps``' table (largest gap first), one group per recognisability band."""
    band = pd.cut(table["recognisability"], [low for low, _, _ in BANDS] + [float("inf")], right=False, labels=False)
    label_of = [f"{r['class']} ({r['recognisability']:.0%})" for r in table.to_dict("records")]
    groups = []
    for index, (_, label, colour) in enumerate(BANDS):
        rows = table[band == index]
        if len(rows):
            groups.append(
                Bars(
                    f"synthetic images {label}" if index == 0 else label,
                    [label_of[i] for i in rows.index],
                    rows["gap_pp"].astype(float).tolist(),
                    [ci_or_zero(ci) for ci in rows["gap_pp_ci95"]],
                    colour,
                )
            )
    spread = table["gap_pp_ci95"].fillna(0)
    ends = pd.concat([table["gap_pp"] - spread, table["gap_pp"] + spread])
    return BarChart(
        "Per-class gaps: which classes the generator cannot render",
        "real-only minus synthetic-only test accuracy on the class, points (paired by seed, 95% CI); "
        "in brackets the judges' recognisability of its synthetic images",
        groups,
        [],
        (min(0.0, float(ends.min())) - 1, float(ends.max()) + 1),
        (8.0, 0.22 * len(table) + 1.5),
        label_of,  # by gap across the bands, as the table is
    )
