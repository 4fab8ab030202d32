"""Layer swap: one namespace per cell (which end of the network is kept, from which source's student), each
training every cut and seed; the summary and figure over all cells."""

from kedro.pipeline import Node, Pipeline

from mind_the_gap.pipelines.layer_swap.nodes import OTHER, summarize_layer_swap, train_layer_swap
from mind_the_gap.pipelines.student_runs import bind

ARRANGEMENTS = ("prefix", "suffix")
SOURCES = ("real", "synthetic")
SHARED = ["real_val", "real_test", "student_store", "real_statistics"]
PARAMETERS = ["params:student", "params:training", "params:layer_swap"]
CELLS = [f"{arrangement}_from_{source}" for arrangement in ARRANGEMENTS for source in SOURCES]


def _cell(arrangement: str, source: str) -> Pipeline:
    train = Node(
        bind(train_layer_swap, arrangement=arrangement, source=source),
        ["parent_runs", "other_train", *SHARED, *PARAMETERS],
        "runs",
        name="train_students",
    )
    inputs = {"parent_runs": f"baselines_{source}_runs", "other_train": f"{OTHER[source]}_train"}
    return Pipeline(
        [train],
        namespace=f"layer_swap.{arrangement}_from_{source}",
        inputs=inputs | {s: s for s in SHARED},
        parameters=set(PARAMETERS),
    )


def create_pipeline(**kwargs) -> Pipeline:
    summary = Node(
        summarize_layer_swap,
        ["baselines_real_runs", "baselines_synthetic_runs", "params:student", *(f"layer_swap.{c}.runs" for c in CELLS)],
        ["layer_swap_summary", "layer_swap_metrics", "layer_swap_figure", "layer_swap_interactive"],
        name="summarize",
        namespace="layer_swap",
    )
    return Pipeline([*(_cell(a, s) for a in ARRANGEMENTS for s in SOURCES), summary])
