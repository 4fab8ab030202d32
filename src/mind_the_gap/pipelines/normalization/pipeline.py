"""Normalization: input statistics of both sources, the per-unit profile of the baseline students, and the
students normalised otherwise or adapted with AdaBN."""

from kedro.pipeline import Node, Pipeline

from mind_the_gap.pipelines.normalization.nodes import (
    compare_normalizations,
    measure_input_statistics,
    profile_units,
    train_with_synthetic_statistics,
)
from mind_the_gap.pipelines.wiring import study_node

BASELINES = ["baselines_real_runs", "baselines_synthetic_runs"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            study_node(),
            Node(
                measure_input_statistics,
                ["real_train", "synthetic_train"],
                ["normalization_input_statistics", "normalization_histograms", "normalization_input_metrics"],
                name="measure_input_statistics",
                namespace="normalization",
            ),
            Node(
                profile_units,
                [*BASELINES, "real_train", "synthetic_train", "study", "analysis_store", "params:normalization"],
                [
                    "normalization_unit_profile",
                    "normalization_figure",
                    "normalization_interactive",
                    "normalization_profile_metrics",
                ],
                name="profile_units",
                namespace="normalization",
            ),
            Node(
                train_with_synthetic_statistics,
                ["synthetic_train", "study", "params:normalization"],
                "normalization.synthetic_statistics.runs",
                name="train_students",
                namespace="normalization.synthetic_statistics",
            ),
            Node(
                compare_normalizations,
                [
                    *BASELINES,
                    "normalization.synthetic_statistics.runs",
                    "real_train",
                    "study",
                    "analysis_store",
                    "params:normalization",
                ],
                ["normalization_summary", "normalization_per_seed", "normalization_metrics"],
                name="compare_normalizations",
                namespace="normalization",
            ),
        ]
    )
