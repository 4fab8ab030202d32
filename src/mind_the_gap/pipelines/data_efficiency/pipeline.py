"""Data efficiency: the from-scratch and the fine-tuning cells, each over fractions of the real pool and seeds,
and the trade-off summary."""

from kedro.pipeline import Node, Pipeline

from mind_the_gap.pipelines.data_efficiency.nodes import summarize_data_efficiency, train_finetuned, train_from_scratch
from mind_the_gap.pipelines.wiring import study_node


def create_pipeline(**kwargs) -> Pipeline:
    scratch = Node(
        train_from_scratch,
        ["real_train", "study", "params:data_efficiency"],
        "data_efficiency.scratch.runs",
        name="train_students",
        namespace="data_efficiency.scratch",
    )
    finetune = Node(
        train_finetuned,
        ["baselines_synthetic_runs", "real_train", "study", "params:data_efficiency"],
        "data_efficiency.finetune.runs",
        name="train_students",
        namespace="data_efficiency.finetune",
    )
    summary = Node(
        summarize_data_efficiency,
        [
            "baselines_real_runs",
            "baselines_synthetic_runs",
            "data_efficiency.scratch.runs",
            "data_efficiency.finetune.runs",
            "params:data_efficiency",
        ],
        ["data_efficiency_summary", "data_efficiency_metrics", "data_efficiency_figure", "data_efficiency_interactive"],
        name="summarize",
        namespace="data_efficiency",
    )
    return Pipeline([study_node(), scratch, finetune, summary])
