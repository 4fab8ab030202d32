"""Generation: synthetic images per real class from the configured backend, as PNGs and as tensors."""

from kedro.pipeline import Node, Pipeline

from mind_the_gap.pipelines.generation.nodes import generate_synthetic_images, pack_synthetic_images


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                generate_synthetic_images,
                ["params:generation", "generator_model", "real_train", "synthetic_images_dir"],
                ["synthetic_manifest", "generation_metrics"],
                name="generate_synthetic_images",
            ),
            Node(
                pack_synthetic_images,
                ["synthetic_manifest", "synthetic_images_dir", "real_train", "params:generation"],
                "synthetic_train",
                name="pack_synthetic_images",
            ),
        ]
    )
