"""Ablations: one namespace per factor, each from one template (its training sets, then its students over the
seeds); the texture-vs-shape tests, each set's fidelity and diversity, the per-class gaps; one summary over every
factor."""

from kedro.pipeline import Node, Pipeline

from mind_the_gap.experiments import ablations
from mind_the_gap.pipelines.ablations import nodes
from mind_the_gap.pipelines.wiring import bind, study_node

REAL_SETS = ["real_train", "synthetic_train"]  # factors that train on the existing sets
GENERATED = ["generation_sets", "synthetic_images_dir", "params:generation", "real_train"]  # factors that generate

# factor -> (its generation node, or None; its training node; the training node's own inputs)
FACTORS = {
    "augmentation": (None, bind(nodes.train_on_pools, factor="augmentation"), REAL_SETS),
    "texture_shape": (None, bind(nodes.train_on_pools, factor="texture_shape"), REAL_SETS),
    "oracle": (bind(nodes.generate_variant_sets, factor="oracle"), nodes.train_oracle, GENERATED),
    "diversity": (bind(nodes.generate_variant_sets, factor="diversity"), nodes.train_diversity, GENERATED),
    "mixing": (None, bind(nodes.train_on_pools, factor="mixing"), REAL_SETS),
}


def _factor(factor: str) -> Pipeline:
    generate, train, inputs = FACTORS[factor]
    steps = [Node(train, [*inputs, "study", "params:ablations"], "runs", name="train_students")]
    if generate is not None:
        steps.insert(
            0,
            Node(
                generate,
                ["params:generation", "generator_model", "real_train", "synthetic_images_dir", "params:ablations"],
                "generation_sets",
                name="generate",
            ),
        )
    external = {"real_train", "synthetic_train", "synthetic_images_dir", "generator_model", "study"}
    return Pipeline(
        steps,
        namespace=f"ablations.{factor}",
        inputs=external & {i for s in steps for i in s.inputs},
        parameters={"params:generation", "params:ablations"} & {i for s in steps for i in s.inputs},
    )


def create_pipeline(**kwargs) -> Pipeline:
    views = Node(
        ablations.evaluate_texture_shape,
        [
            "baselines_real_runs",
            "baselines_synthetic_runs",
            "ablations.texture_shape.runs",
            "study",
            "analysis_store",
            "params:ablations",
        ],
        "ablations_texture_shape_views",
        name="evaluate_texture_shape",
        namespace="ablations.texture_shape",
    )
    diversity = Node(
        ablations.measure_sets,
        [
            "ablations.diversity.generation_sets",
            "synthetic_images_dir",
            "params:generation",
            "real_train",
            "synthetic_train",
            "baselines_real_runs",
            "study",
            "analysis_store",
            "params:ablations",
        ],
        ["ablations_diversity", "ablations_diversity_per_class", "ablations_diversity_metrics"],
        name="measure_sets",
        namespace="ablations.diversity",
    )
    per_class_gaps = Node(
        nodes.measure_per_class_gaps,
        ["baselines_real_runs", "baselines_synthetic_runs", "ablations_diversity_per_class", "study"],
        [
            "ablations_per_class_summary",
            "ablations_per_class_correlations",
            "ablations_per_class_figure",
            "ablations_per_class_interactive",
        ],
        name="measure_per_class_gaps",
        namespace="ablations",
    )
    summary = Node(
        nodes.summarize_ablations,
        [
            "baselines_real_runs",
            "baselines_synthetic_runs",
            "ablations_texture_shape_views",
            *(f"ablations.{factor}.runs" for factor in FACTORS),
        ],
        ["ablations_summary", "ablations_metrics", "ablations_figure", "ablations_interactive"],
        name="summarize",
        namespace="ablations",
    )
    return Pipeline([study_node(), *(_factor(factor) for factor in FACTORS), views, diversity, per_class_gaps, summary])
