"""Levers: one namespace per lever (its synthetic students, then from each the layer swap's headline student), the
synthetic baselines' own headline students as the reference lever ``none``; the pool the generated-set levers draw
from and the filtering's judge; the summary and figure over all."""

from kedro.pipeline import Node, Pipeline

from mind_the_gap.experiments import levers
from mind_the_gap.experiments.levers import BASELINE, LEVERS
from mind_the_gap.pipelines.levers import nodes
from mind_the_gap.pipelines.wiring import bind, study_node

HEADLINE_CUT = "params:layer_swap.headline_cut"
GENERATED = ("more_images", "filtering")  # the levers whose students train on sets drawn from the pool


def _train(lever: str) -> Node:
    """The node that trains a lever's students and their headline swaps, with the inputs that lever reads."""
    if lever in GENERATED:
        inputs = [
            f"levers.{lever}.generation_sets",
            "synthetic_images_dir",
            "real_train",
            "study",
            "params:generation",
            "params:levers",
            HEADLINE_CUT,
        ]
        func = bind(levers.train_on_generated, lever=lever)
    elif lever == BASELINE:
        inputs = ["real_train", "baselines_synthetic_runs", "study", "params:levers", HEADLINE_CUT]
        func = nodes.train_baseline_swaps
    else:
        inputs = ["real_train", "synthetic_train", "baselines_real_runs", "study", "params:levers", HEADLINE_CUT]
        func = nodes.train_distillation
    return Node(func, inputs, f"levers.{lever}.runs", name="train_students", namespace=f"levers.{lever}")


def create_pipeline(**kwargs) -> Pipeline:
    pool = Node(
        levers.generate_pool,
        [
            "synthetic_manifest",
            "params:generation",
            "generator_model",
            "real_train",
            "synthetic_images_dir",
            "params:levers",
        ],
        "levers.pool.generation_sets",
        name="generate_images",
        namespace="levers.pool",
    )
    more_images = Node(
        nodes.select_more_images,
        ["levers.pool.generation_sets", "params:generation", "params:levers"],
        "levers.more_images.generation_sets",
        name="select_sets",
        namespace="levers.more_images",
    )
    judge = Node(
        levers.train_judge,
        ["real_generator_pool", "study", "params:levers"],
        "levers.judge.runs",
        name="train_students",
        namespace="levers.judge",
    )
    filtered = Node(
        levers.filter_pool,
        [
            "levers.pool.generation_sets",
            "levers.judge.runs",
            "synthetic_images_dir",
            "real_train",
            "study",
            "params:generation",
            "params:levers",
        ],
        "levers.filtering.generation_sets",
        name="select_sets",
        namespace="levers.filtering",
    )
    summary = Node(
        nodes.summarize_levers,
        ["baselines_real_runs", "baselines_synthetic_runs", *(f"levers.{lever}.runs" for lever in (BASELINE, *LEVERS))],
        ["levers_summary", "levers_metrics", "levers_figure", "levers_interactive"],
        name="summarize",
        namespace="levers",
    )
    trains = [_train(lever) for lever in (BASELINE, *LEVERS)]
    return Pipeline([study_node(), pool, more_images, judge, filtered, *trains, summary])
