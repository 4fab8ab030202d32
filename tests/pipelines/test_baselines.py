"""The baselines pipeline: students per cell and seed, mean ± 95% CI per cell with each cell's gap to real, and how
recognisable the synthetic training images are to the first seed's real-trained student."""

from __future__ import annotations

import math
from dataclasses import replace

import mlflow
import pandas as pd
import pytest
from scipy import stats

from mind_the_gap.experiments.baselines import BaselinesConfig
from mind_the_gap.pipelines.baselines.nodes import measure_recognisability, summarize_baselines
from mind_the_gap.pipelines.baselines.pipeline import create_pipeline

from ..conftest import striped_images
from .conftest import BASELINE_SEEDS, TinyExperiment


def runs(cell: str, accuracies: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "pipeline": "baselines",
            "cell": cell,
            "seed": range(len(accuracies)),
            "test_accuracy": accuracies,
            "test_top5_accuracy": 1.0,
            "val_accuracy": accuracies,
            "train_seconds": 10.0,
        }
    )


def test_summary_gives_mean_ci_and_gap_in_points():
    summary, metrics = summarize_baselines(runs("real", [0.90, 0.80, 0.85]), runs("synthetic", [0.60, 0.50, 0.55]))
    summary = summary.set_index("cell")
    assert list(summary.index) == ["real", "synthetic"]
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
    assert "real.test_accuracy_ci95" not in metrics
    assert "synthetic.gap_pp" in metrics


def test_without_real_students_there_is_no_gap():
    summary, metrics = summarize_baselines(runs("synthetic", [0.6, 0.7]))
    assert "gap_pp" not in summary
    assert not any(name.endswith("gap_pp") for name in metrics)


def test_every_student_is_a_tracked_row_with_one_curve_point_per_epoch(tiny: TinyExperiment, tracking: str):
    for cell, table in (("real", tiny.real_runs), ("synthetic", tiny.synthetic_runs)):
        assert table["cell"].eq(cell).all()
        assert table["pipeline"].eq("baselines").all()
        assert table["seed"].tolist() == BASELINE_SEEDS
        assert table["student_key"].is_unique
        assert table["test_accuracy"].between(0, 1).all()
    student = mlflow.search_runs(
        experiment_names=["Default"], filter_string=f"tags.student_key = '{tiny.real_runs['student_key'][0]}'"
    ).iloc[0]
    assert student["tags.mlflow.runName"] == "baselines/real/seed0"
    assert (student["tags.pipeline"], student["tags.cell"]) == ("baselines", "real")
    client = mlflow.MlflowClient()
    # The final metrics at the last epoch's step, and no second point of a per-epoch curve at step 0.
    assert [point.step for point in client.get_metric_history(student["run_id"], "train_loss")] == [1, 2]
    assert [point.step for point in client.get_metric_history(student["run_id"], "test_accuracy")] == [2]


def test_recognisability_scores_the_synthetic_set_with_the_first_real_student(tiny: TinyExperiment):
    config = BaselinesConfig(seeds=[1, 0], samples_per_class=3)
    table, metrics, figure = measure_recognisability(tiny.real_runs, tiny.synthetic_train, tiny.study, config)
    assert table["class"].tolist() == list(tiny.synthetic_train.class_names)
    assert table["recognisability"].between(0, 1).all()
    assert 0 <= metrics["top1"]["value"] <= 1
    assert metrics["top1"]["step"] == 0
    assert metrics["top1"]["value"] == pytest.approx(table["recognisability"].mean())  # balanced classes
    assert {f"class/{i}" for i in range(4)} <= set(metrics)
    assert sum(bool(ax.images) for ax in figure.axes) == 4 * 3  # a row of 3 images per class
    first_seed_only = measure_recognisability(
        tiny.real_runs, tiny.synthetic_train, tiny.study, BaselinesConfig(seeds=[0])
    )
    pd.testing.assert_frame_equal(table, first_seed_only[0])


def test_a_class_missing_from_the_synthetic_set_is_a_row_without_a_metric(tiny: TinyExperiment):
    three_classes = tiny.synthetic_train.subset(tiny.synthetic_train.labels < 3)
    table, metrics, _ = measure_recognisability(
        tiny.real_runs, three_classes, tiny.study, BaselinesConfig(seeds=BASELINE_SEEDS)
    )
    assert len(table) == 4
    assert math.isnan(table["recognisability"].iloc[3])
    assert "class/3" not in metrics
    assert all(math.isfinite(m["value"]) for m in metrics.values())


def test_recognisability_without_the_first_seeds_student_says_what_to_run(tiny: TinyExperiment, tmp_path):
    with pytest.raises(ValueError, match="baselines.seeds"):
        measure_recognisability(tiny.real_runs, tiny.synthetic_train, tiny.study, BaselinesConfig(seeds=[5]))
    with pytest.raises(ValueError, match="kedro run --pipeline baselines"):  # the table names a student not on disk
        measure_recognisability(
            tiny.real_runs,
            striped_images(2),
            replace(tiny.study, store=tmp_path),
            BaselinesConfig(seeds=BASELINE_SEEDS),
        )


def test_every_cell_is_a_namespace_feeding_the_summary_and_synthetic_train_is_scored():
    pipeline = create_pipeline()
    assert {node.name for node in pipeline.nodes} == {
        "baselines.real.train_students",
        "baselines.synthetic.train_students",
        "baselines.summarize",
        "baselines.measure_recognisability",
        "build_study",
    }
    trainers = {node.namespace: node for node in pipeline.nodes if node.name.endswith("train_students")}
    assert set(trainers) == {"baselines.real", "baselines.synthetic"}
    assert "real_train" in trainers["baselines.real"].inputs
    assert trainers["baselines.real"].outputs == ["baselines_real_runs"]
    assert "synthetic_train" in trainers["baselines.synthetic"].inputs
    assert trainers["baselines.synthetic"].outputs == ["baselines_synthetic_runs"]
    (scoring,) = pipeline.only_nodes_with_outputs("synthetic_recognisability").nodes
    assert {"synthetic_train", "baselines_real_runs", "study"} <= set(scoring.inputs)
    assert set(scoring.outputs) == {
        "synthetic_recognisability",
        "synthetic_recognisability_metrics",
        "synthetic_samples",
    }
    assert {"real_train", "synthetic_train", "real_test", "real_statistics"} <= pipeline.inputs()
    assert pipeline.outputs() >= {"baselines_summary", "baselines_metrics", "synthetic_recognisability"}
