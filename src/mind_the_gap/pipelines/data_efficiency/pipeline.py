"""Data efficiency: the from-scratch and the fine-tuning cells, each over fractions of the real pool and seeds,
and the trade-off summary."""

from kedro.pipeline import Node, Pipeline

from mind_the_gap.pipelines.data_efficiency.nodes import summarize_data_efficiency, train_finetuned, train_from_scratch

SHARED = ["real_train", "real_val", "real_test", "student_store", "real_statistics"]
PARAMETERS = ["params:student", "params:training", "params:data_efficiency"]


def create_pipeline(**kwargs) -> Pipeline:
    scratch = Node(
        train_from_scratch,
        [*SHARED, *PARAMETERS],
        "data_efficiency.scratch.runs",
        name="train_students",
        namespace="data_efficiency.scratch",
    )
    finetune = Node(
        train_finetuned,
        ["baselines_synthetic_runs", *SHARED, *PARAMETERS],
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
    return Pipeline([scratch, finetune, summary])
