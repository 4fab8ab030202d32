"""The generation nodes: the generated set's manifest and speed for MLflow, and the set packed as tensors; the
ablations' generation nodes, each runnable alone for a shard."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mind_the_gap.generators.class_diffusion import ClassDiffusionConfig, ClassDiffusionModel, build_unet
from mind_the_gap.generators.config import GenerationConfig
from mind_the_gap.pipeline_registry import register_pipelines
from mind_the_gap.pipelines.generation.nodes import generate_synthetic_images, pack_synthetic_images
from mind_the_gap.pipelines.generation.pipeline import create_pipeline

from ..conftest import striped_images


def test_the_nodes_return_the_manifest_its_metrics_and_the_packed_set(tmp_path: Path):
    torch.manual_seed(0)  # random weights: the images need not look like anything here
    config = ClassDiffusionConfig(block_out_channels=(8, 16), norm_num_groups=4, sampling_steps=2)
    real = striped_images(2, size=16)
    model = ClassDiffusionModel(
        build_unet(config, 1, (16, 16), real.num_classes), config, real.class_names, (16, 16), 1
    )
    generator_model = {"path": str(model.save(tmp_path / "generator"))}
    generation = GenerationConfig(images_per_class=2, batch_size=5)

    manifest, metrics = generate_synthetic_images(generation, generator_model, real, tmp_path / "images")
    assert len(manifest) == 8
    assert set(metrics) == {"images", "images_reused", "seconds", "images_per_second"}
    assert metrics["images"] == {"value": 8.0, "step": 0}
    assert metrics["images_reused"] == {"value": 0.0, "step": 0}
    packed = pack_synthetic_images(manifest, tmp_path / "images", real, generation)
    assert packed.class_counts().tolist() == [2] * 4


def test_the_pipeline_packs_what_it_generated():
    assert create_pipeline().inputs() == {"params:generation", "generator_model", "real_train", "synthetic_images_dir"}
    assert create_pipeline().outputs() == {"generation_metrics", "synthetic_train"}


@pytest.mark.parametrize("factor", ["oracle", "diversity"])
def test_a_shard_of_an_ablations_generation_runs_its_node_alone(factor: str):
    # README: kedro run --pipeline ablations --to-nodes ablations.<factor>.generate --params generation.shard=i/N
    shard_run = register_pipelines()["ablations"].to_nodes(f"ablations.{factor}.generate")
    assert [node.name for node in shard_run.nodes] == [f"ablations.{factor}.generate"]
    assert "params:generation" in shard_run.inputs()
