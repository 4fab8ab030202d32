"""Generator training: the offline class-conditional diffusion model, and a grid of its samples."""

from kedro.pipeline import Node, Pipeline

from mind_the_gap.pipelines.generator_training.nodes import sample_generator, train_generator


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
                sample_generator,
                ["generator_model", "real_generator_pool", "params:generator_training"],
                "generator_samples",
                name="sample_generator",
            ),
        ]
    )
