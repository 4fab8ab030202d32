"""A synthetic set from the offline generator: the run-key folder, the manifest, the shards (the ablations' variants'
too) and the loaded tensors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.experiments.ablations import (
    AblationsConfig,
    diversity_generations,
    generate_variants,
    oracle_generations,
)
from mind_the_gap.generators.class_diffusion import ClassDiffusionConfig, ClassDiffusionModel, build_unet
from mind_the_gap.generators.config import GenerationConfig
from mind_the_gap.generators.synthesis import SetShape, generate_set, load_set

from ..conftest import striped_images

CONFIG = ClassDiffusionConfig(block_out_channels=(8, 16), norm_num_groups=4, sampling_steps=2)


@pytest.fixture(scope="module")
def generator_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    torch.manual_seed(0)  # random weights: the images need not look like anything here
    names = striped_images(1).class_names
    model = ClassDiffusionModel(build_unet(CONFIG, 1, (16, 16), len(names)), CONFIG, names, (16, 16), 1)
    return {"path": str(model.save(tmp_path_factory.mktemp("generator")))}


def generate(generator_model, real: ImageSet, output: Path, **params):
    config = GenerationConfig(images_per_class=3, batch_size=5, **params)
    return generate_set(config, generator_model, SetShape.of(real), output, real)


def test_images_land_under_their_run_key_with_a_complete_manifest(generator_model, tmp_path: Path):
    real = striped_images(4, size=16)
    manifest, stats = generate(generator_model, real, tmp_path)
    assert len(manifest) == 12
    assert manifest.groupby("class_name").size().eq(3).all()
    key = manifest["run_key"].iloc[0]
    assert manifest["file"].str.startswith(f"{key}/").all()
    assert all((tmp_path / file).is_file() for file in manifest["file"])
    assert {"prompt", "seed", "backend", "weights_sha256", "steps", "guidance_scale"} <= set(manifest.columns)
    assert manifest["prompt"].tolist() == [name for name in real.class_names for _ in range(3)]
    assert json.loads((tmp_path / key / "params.json").read_text())["seed"] == 0
    assert (stats.generated, stats.skipped) == (12, 0)

    loaded = load_set(manifest, tmp_path, real, GenerationConfig(images_per_class=3))
    assert loaded.images.shape == (12, 1, 16, 16)
    assert loaded.class_names == real.class_names
    assert loaded.class_counts().tolist() == [3] * 4


def test_fewer_images_reuse_a_prefix_and_a_new_seed_a_new_folder(generator_model, tmp_path: Path):
    real = striped_images(4, size=16)
    full, _ = generate(generator_model, real, tmp_path)
    fewer, stats = generate_set(GenerationConfig(images_per_class=2), generator_model, SetShape.of(real), tmp_path)
    assert (stats.generated, stats.skipped) == (0, 8)
    assert fewer["file"].tolist() == full[full["index"] < 2]["file"].tolist()
    reseeded, _ = generate(generator_model, real, tmp_path, seed=1)
    assert reseeded["run_key"].iloc[0] != full["run_key"].iloc[0]


def test_loading_an_empty_manifest_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="manifest is empty"):
        load_set(pd.DataFrame(columns=["file"]), tmp_path, striped_images(2), GenerationConfig())


def test_a_launcher_process_takes_its_shard_and_loading_waits_for_every_shard(
    generator_model, tmp_path: Path, monkeypatch
):
    real = striped_images(4, size=16)
    monkeypatch.setenv("WORLD_SIZE", "2")  # as `accelerate launch --num_processes 2` sets them
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    first, stats = generate(generator_model, real, tmp_path)
    assert stats.generated == 6
    assert len(first) == 6
    assert ((first["class_index"] + first["index"]) % 2 == 1).all()
    with pytest.raises(ValueError, match="only 6 of 12 synthetic images .* without generation.shard"):
        load_set(first, tmp_path, real, GenerationConfig(images_per_class=3))

    monkeypatch.setenv("RANK", "0")
    merged, stats = generate(generator_model, real, tmp_path)
    assert stats.generated == 6
    assert len(merged) == 12  # the other shard's images are merged in
    assert len(load_set(merged, tmp_path, real, GenerationConfig(images_per_class=3))) == 12


def test_an_explicit_shard_wins_over_the_launcher(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert GenerationConfig().for_this_process().shard == "3/4"
    assert GenerationConfig(shard="0/2").for_this_process().shard == "0/2"
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert GenerationConfig().for_this_process().shard is None


def test_text_conditioned_generation_needs_only_the_sets_shape_and_img2img_its_images(generator_model, tmp_path: Path):
    real = striped_images(2, size=16)
    shape = SetShape(real.class_names, channels=1, image_size=16)
    manifest, _ = generate_set(GenerationConfig(images_per_class=2), generator_model, shape, tmp_path)
    assert len(manifest) == 8
    img2img = GenerationConfig(images_per_class=2, backend="img2img")
    with pytest.raises(ValueError, match="generation.backend img2img starts from real images"):
        generate_set(img2img, generator_model, shape, tmp_path)
    assert len(generate_set(img2img, generator_model, shape, tmp_path, real)[0]) == 8


def test_where_images_are_generated_is_not_part_of_their_run_key(generator_model, tmp_path: Path):
    real = striped_images(2, size=16)
    anywhere, _ = generate(generator_model, real, tmp_path)
    told_no_cpu, stats = generate(generator_model, real, tmp_path, device="cpu", allow_cpu=False)
    assert told_no_cpu["run_key"].iloc[0] == anywhere["run_key"].iloc[0]
    assert stats.generated == 0


def test_a_shard_of_the_ablations_variants_generates_only_its_share(generator_model, tmp_path: Path):
    # `kedro run --pipeline ablations --to-nodes ablations.oracle.generate --params generation.shard=1/2`
    real = striped_images(3, size=16)
    config = AblationsConfig(oracle={"reconstruction_strengths": [0.5, 1.0]}, diversity={"guidance_scales": [1.0, 3.0]})
    generation = GenerationConfig(images_per_class=3, batch_size=5, shard="1/2")
    variants = oracle_generations(generation, config) | diversity_generations(generation, config)
    manifest = generate_variants(variants, generator_model, real, tmp_path)
    assert manifest.groupby("variant").size().to_dict() == {variant: 6 for variant in variants}
    assert ((manifest["class_index"] + manifest["index"]) % 2 == 1).all()
    on_disk = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.glob("*/*/*.png"))
    assert on_disk == sorted(manifest["file"])  # the other shard's images are not made
    with pytest.raises(ValueError, match="only 6 of 12 synthetic images"):
        load_set(manifest[manifest["variant"] == "strength 0.5"], tmp_path, real, generation)
