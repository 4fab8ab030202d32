"""Data efficiency: each arm's learning rate chosen on the validation set, then the from-scratch, fine-tuned and
re-initialised cells, each over fractions of the real pool and seeds, and the trade-off summary."""

from kedro.pipeline import Node, Pipeline

from mind_the_gap.pipelines.data_efficiency.nodes import (
    summarize_data_efficiency,
    train_from_scratch,
    train_from_synthetic,
    train_learning_rate_candidates,
)
from mind_the_gap.pipelines.wiring import bind, study_node

LEARNING_RATE_RUNS = "data_efficiency.learning_rate.runs"


def create_pipeline(**kwargs) -> Pipeline:
    candidates = Node(
        train_learning_rate_candidates,
        ["baselines_synthetic_runs", "real_train", "study", "params:data_efficiency"],
        LEARNING_RATE_RUNS,
        name="train_students",
        namespace="data_efficiency.learning_rate",
    )
    scratch = Node(
        train_from_scratch,
        ["real_train", "study", "params:data_efficiency", LEARNING_RATE_RUNS],
        "data_efficiency.scratch.runs",
        name="train_students",
        namespace="data_efficiency.scratch",
    )
    from_synthetic = [
        Node(
            bind(train_from_synthetic, reinit=reinit),
            ["baselines_synthetic_runs", "real_train", "study", "params:data_efficiency", LEARNING_RATE_RUNS],
            f"data_efficiency.{cell}.runs",
            name="train_students",
            namespace=f"data_efficiency.{cell}",
        )
        for cell, reinit in (("finetune", False), ("reinit", True))
    ]
    summary = Node(
        summarize_data_efficiency,
        [
            "baselines_real_runs",
            "baselines_synthetic_runs",
            "data_efficiency.scratch.runs",
            "data_efficiency.finetune.runs",
            "data_efficiency.reinit.runs",
            LEARNING_RATE_RUNS,
            "params:data_efficiency",
        ],
        [
            "data_efficiency_summary",
            "data_efficiency_learning_rate_summary",
            "data_efficiency_metrics",
            "data_efficiency_figure",
            "data_efficiency_interactive",
        ],
        name="summarize",
        namespace="data_efficiency",
    )
    return Pipeline([study_node(), candidates, scratch, *from_synthetic, summary])
