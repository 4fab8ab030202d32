"""Baselines: students trained on real or on synthetic images, tested on the real test set, over seeds."""

from kedro.pipeline import Node, Pipeline

from mind_the_gap.pipelines.baselines.nodes import measure_recognisability, summarize_baselines, train_baselines
from mind_the_gap.pipelines.wiring import bind, study_node

# cell -> the training set its students learn from
CELLS = {"real": "real_train", "synthetic": "synthetic_train"}


def _cell(cell: str, training_set: str) -> Pipeline:
    train = Node(
        bind(train_baselines, cell=cell), ["train", "study", "params:baselines"], "runs", name="train_students"
    )
    # The runs tables leave the namespace under plain names: other experiments read them.
    return Pipeline(
        [train],
        namespace=f"baselines.{cell}",
        inputs={"train": training_set, "study": "study"},
        outputs={"runs": f"baselines_{cell}_runs"},
        parameters={"params:baselines"},
    )


def create_pipeline(**kwargs) -> Pipeline:
    summary = Node(
        summarize_baselines,
        [f"baselines_{cell}_runs" for cell in CELLS],
        ["baselines_summary", "baselines_metrics"],
        name="summarize",
        namespace="baselines",
    )
    recognisability = Node(
        measure_recognisability,
        ["baselines_real_runs", "synthetic_train", "study", "params:baselines"],
        ["synthetic_recognisability", "synthetic_recognisability_metrics", "synthetic_samples"],
        name="measure_recognisability",
        namespace="baselines",
    )
    return Pipeline([study_node(), *(_cell(cell, data) for cell, data in CELLS.items()), summary, recognisability])
