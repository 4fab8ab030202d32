"""Levers: one namespace per lever (its synthetic students, then from each the layer swap's headline student), the
synthetic baselines' own headline students as the reference lever ``none``; the summary and figure over all."""

from kedro.pipeline import Node, Pipeline

from mind_the_gap.experiments.levers import BASELINE, PLANS
from mind_the_gap.pipelines.levers.nodes import summarize_levers, train_lever
from mind_the_gap.pipelines.wiring import bind, study_node

LEVERS = [BASELINE, *PLANS]


def _lever(lever: str) -> Pipeline:
    train = Node(
        bind(train_lever, lever=lever),
        [
            "real_train",
            "synthetic_train",
            "baselines_real_runs",
            "baselines_synthetic_runs",
            "study",
            "params:levers",
            "params:layer_swap.headline_cut",
        ],
        "runs",
        name="train_students",
    )
    external = {"real_train", "synthetic_train", "baselines_real_runs", "baselines_synthetic_runs", "study"}
    return Pipeline(
        [train],
        namespace=f"levers.{lever}",
        inputs=external,
        parameters={"params:levers", "params:layer_swap.headline_cut"},
    )


def create_pipeline(**kwargs) -> Pipeline:
    summary = Node(
        summarize_levers,
        ["baselines_real_runs", "baselines_synthetic_runs", *(f"levers.{lever}.runs" for lever in LEVERS)],
        ["levers_summary", "levers_metrics", "levers_figure", "levers_interactive"],
        name="summarize",
        namespace="levers",
    )
    return Pipeline([study_node(), *(_lever(lever) for lever in LEVERS), summary])
