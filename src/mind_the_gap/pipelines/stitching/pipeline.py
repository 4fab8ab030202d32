"""Stitching: one namespace per arrangement (which source's student gives the lower units, which the upper), each
training every cut and seed; the summary and figure over all."""

from kedro.pipeline import Node, Pipeline

from mind_the_gap.experiments.stitching import ARRANGEMENTS
from mind_the_gap.pipelines.stitching.nodes import summarize_stitching, train_stitching
from mind_the_gap.pipelines.wiring import bind, study_node


def _arrangement(arrangement: str) -> Node:
    return Node(
        bind(train_stitching, arrangement=arrangement),
        ["baselines_real_runs", "baselines_synthetic_runs", "real_train", "study", "params:stitching"],
        f"stitching.{arrangement}.runs",
        name="train_students",
        namespace=f"stitching.{arrangement}",
    )


def create_pipeline(**kwargs) -> Pipeline:
    summary = Node(
        summarize_stitching,
        [
            "baselines_real_runs",
            "baselines_synthetic_runs",
            *(f"stitching.{arrangement}.runs" for arrangement in ARRANGEMENTS),
        ],
        ["stitching_summary", "stitching_metrics", "stitching_figure", "stitching_interactive"],
        name="summarize",
        namespace="stitching",
    )
    return Pipeline([study_node(), *(_arrangement(arrangement) for arrangement in ARRANGEMENTS), summary])
