"""Generator training: the offline class-conditional diffusion model, and how recognisable its images are."""

from kedro.pipeline import Node, Pipeline

from mind_the_gap.pipelines.generator_training.nodes import measure_recognisability, train_generator


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                train_generator,
                ["real_generator_pool", "params:generator_training", "generator_models_dir"],
                "generator_model",
                name="train_generator",
            ),
            Node(
                measure_recognisability,
                [
                    "generator_model",
                    "baselines_real_runs",
                    "student_store",
                    "real_test",
                    "params:student",
                    "params:training",
                    "params:generator_training",
                ],
                ["generator_recognisability", "generator_training_metrics", "generator_samples"],
                name="measure_recognisability",
            ),  # fmt: skip
        ]
    )
