"""The baselines pipeline's own step: mean ± 95% CI per variant over seeds, and each variant's gap to real."""

from __future__ import annotations

import pandas as pd
import pytest
from scipy import stats

from mind_the_gap.pipelines.baselines.nodes import summarize_baselines
from mind_the_gap.pipelines.baselines.pipeline import create_pipeline


def runs(variant: str, accuracies: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"pipeline": "baselines", "variant": variant, "seed": range(len(accuracies)),
                         "test_accuracy": accuracies, "test_top5_accuracy": 1.0, "val_accuracy": accuracies,
                         "train_seconds": 10.0})  # fmt: skip


def test_summary_gives_mean_ci_and_gap_in_points():
    summary, metrics = summarize_baselines(runs("real", [0.90, 0.80, 0.85]), runs("synthetic", [0.60, 0.50, 0.55]))
    summary = summary.set_index("variant")
    assert summary.loc["real", "n"] == 3
    assert summary.loc["real", "test_accuracy_mean"] == pytest.approx(0.85)
    # Student-t interval for three values with standard deviation 0.05.
    assert summary.loc["real", "test_accuracy_ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * 0.05 / 3**0.5)
    assert summary.loc["synthetic", "gap_pp"] == pytest.approx(30.0)
    assert summary.loc["real", "gap_pp"] == pytest.approx(0.0)
    assert metrics["synthetic.gap_pp"]["value"] == pytest.approx(30.0)
    assert metrics["real.test_accuracy_mean"] == {"value": pytest.approx(0.85), "step": 0}
    assert "real.gap_pp" not in metrics


def test_one_seed_has_no_interval_and_logs_none():
    summary, metrics = summarize_baselines(runs("real", [0.9]), runs("synthetic", [0.7]))
    assert summary["test_accuracy_ci95"].isna().all()
    assert "real.test_accuracy_ci95" not in metrics and "synthetic.gap_pp" in metrics


def test_every_variant_is_a_node_feeding_the_summary():
    pipeline = create_pipeline()
    assert {node.name for node in pipeline.nodes} == {"train_real_baselines", "train_synthetic_baselines",
                                                      "summarize_baselines"}  # fmt: skip
    assert {"real_train", "synthetic_train", "real_test"} <= pipeline.inputs()
    assert pipeline.outputs() >= {"baselines_summary", "baselines_metrics"}
