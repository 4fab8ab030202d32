"""The data-efficiency chart: test accuracy against the real images used."""

from __future__ import annotations

import pandas as pd

from mind_the_gap.results.charts import ACCURACY_BOUNDS, LineChart, Panel, baseline_levels, table_curve


def arm_label(arm: str) -> str:
    """What an arm (``scratch``, ``last 2``, ``all``, ``last 2 re-initialised``) did, in words."""
    if arm == "scratch":
        return "from scratch on the subset"
    if arm == "all":
        return "synthetic student, every unit fine-tuned (pretrain on synthetic, fine-tune on real)"
    if arm.endswith(" re-initialised"):
        return f"synthetic student, {arm.removesuffix(' re-initialised')} units re-initialised and trained"
    return f"synthetic student, {arm} units fine-tuned"


def data_efficiency_chart(summary: pd.DataFrame, reference: pd.DataFrame) -> LineChart:
    """Test accuracy against the number of real images used, one line per strategy with its 95% CI band: each arm
    solid, its convergence check (more steps) dotted in the arm's colour."""
    colours = {arm: "black" if arm == "scratch" else f"C{i}" for i, arm in enumerate(summary["arm"].unique())}
    curves = []
    for (strategy, arm), group in summary.groupby(["strategy", "arm"], sort=False):
        check = strategy != arm
        label = f"{strategy} (convergence check)" if check else arm_label(arm)
        points = group.sort_values("real_images")
        curves.append(
            table_curve(points, "real_images", "test_accuracy", label, colours[arm], ":" if check else "-", band=True)
        )
    levels = baseline_levels(
        reference, {"real": "real-only, every real image", "synthetic": "synthetic-only, no real image"}
    )
    return LineChart(
        "Data efficiency: the last units on a little real data, at tuned rates",
        "real training images used",
        [Panel("test accuracy on real images", curves, levels, ACCURACY_BOUNDS)],
        log2_x=True,
        legend_at="lower right",
        size=(7.5, 4.8),
    )
