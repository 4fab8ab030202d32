"""Layer swap: one namespace per cell (which end of the network is kept, from which source's student), each
training every cut and seed; the summary and figure over all cells."""

from kedro.pipeline import Node, Pipeline

from mind_the_gap.experiments.layer_swap import ARRANGEMENTS, CELLS, OTHER, SOURCES
from mind_the_gap.pipelines.layer_swap.nodes import summarize_layer_swap, train_layer_swap
from mind_the_gap.pipelines.wiring import bind, study_node


def _cell(arrangement: str, source: str) -> Pipeline:
    train = Node(
        bind(train_layer_swap, arrangement=arrangement, source=source),
        ["parent_runs", "other_train", "study", "params:layer_swap"],
        "runs",
        name="train_students",
    )
    inputs = {"parent_runs": f"baselines_{source}_runs", "other_train": f"{OTHER[source]}_train", "study": "study"}
    return Pipeline(
        [train], namespace=f"layer_swap.{arrangement}_from_{source}", inputs=inputs, parameters={"params:layer_swap"}
    )


def create_pipeline(**kwargs) -> Pipeline:
    summary = Node(
        summarize_layer_swap,
        ["baselines_real_runs", "baselines_synthetic_runs", "params:student", *(f"layer_swap.{c}.runs" for c in CELLS)],
        ["layer_swap_summary", "layer_swap_metrics", "layer_swap_figure", "layer_swap_interactive"],
        name="summarize",
        namespace="layer_swap",
    )
    return Pipeline([study_node(), *(_cell(a, s) for a in ARRANGEMENTS for s in SOURCES), summary])
