"""Layer swap: one namespace per cell (which end of the network is kept, from which source's student, the rest
trained on the other source or, for a same-source control, on the same), each training every cut and seed; the
summary and figure over all cells."""

from kedro.pipeline import Node, Pipeline

from mind_the_gap.experiments.layer_swap import CELLS
from mind_the_gap.pipelines.layer_swap.nodes import summarize_layer_swap, train_layer_swap
from mind_the_gap.pipelines.wiring import bind, study_node


def _cell(cell: str, arrangement: str, source: str, trained_on: str) -> Pipeline:
    train = Node(
        bind(train_layer_swap, arrangement=arrangement, source=source, trained_on=trained_on),
        ["parent_runs", "train_set", "study", "params:layer_swap"],
        "runs",
        name="train_students",
    )
    inputs = {"parent_runs": f"baselines_{source}_runs", "train_set": f"{trained_on}_train", "study": "study"}
    return Pipeline([train], namespace=f"layer_swap.{cell}", inputs=inputs, parameters={"params:layer_swap"})


def create_pipeline(**kwargs) -> Pipeline:
    summary = Node(
        summarize_layer_swap,
        [
            "baselines_real_runs",
            "baselines_synthetic_runs",
            "params:student",
            "params:layer_swap",
            *(f"layer_swap.{cell}.runs" for cell in CELLS),
        ],
        ["layer_swap_summary", "layer_swap_metrics", "layer_swap_figure", "layer_swap_interactive"],
        name="summarize",
        namespace="layer_swap",
    )
    return Pipeline([study_node(), *(_cell(cell, *spec) for cell, spec in CELLS.items()), summary])
