"""Baselines' own step: the summary over seeds, with each variant's gap to the real-trained students."""

from __future__ import annotations

import pandas as pd

from mind_the_gap.pipelines.students import summarize_students


def summarize_baselines(*runs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Mean ± 95% CI per variant; ``gap_pp``: how many points of test accuracy a variant loses to ``real``."""
    summary, metrics = summarize_students(*runs)
    real = summary.loc[summary["variant"] == "real", "test_accuracy_mean"]
    if len(real):
        summary["gap_pp"] = 100 * (float(real.iloc[0]) - summary["test_accuracy_mean"])
        for row in summary.itertuples():
            if row.variant != "real":
                metrics[f"{row.variant}.gap_pp"] = {"value": float(row.gap_pp), "step": 0}
    return summary, metrics
