"""Baselines: students trained on one kind of data each, tested on the real test set, over several seeds."""

from kedro.pipeline import Node, Pipeline

from mind_the_gap.pipelines.baselines.nodes import summarize_baselines
from mind_the_gap.pipelines.students import make_student_trainer

# variant -> the training set its students learn from
VARIANTS = {"real": "real_train", "synthetic": "synthetic_train"}


def create_pipeline(**kwargs) -> Pipeline:
    trainers = [
        Node(
            make_student_trainer("baselines", variant),
            [
                training_set,
                "real_val",
                "real_test",
                "student_store",
                "params:student",
                "params:training",
                "params:baselines",
            ],
            f"baselines_{variant}_runs",
            name=f"train_{variant}_baselines",
        )  # fmt: skip
        for variant, training_set in VARIANTS.items()
    ]
    summary = Node(
        summarize_baselines,
        [f"baselines_{variant}_runs" for variant in VARIANTS],
        ["baselines_summary", "baselines_metrics"],
        name="summarize_baselines",
    )
    return Pipeline([*trainers, summary])
