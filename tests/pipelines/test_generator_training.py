"""The generator_training nodes: nothing trained where a pretrained backend needs no generator, and a sample grid."""

from __future__ import annotations

from pathlib import Path

from mind_the_gap.generators.class_diffusion import ClassDiffusionConfig
from mind_the_gap.pipelines.generator_training.nodes import (
    GeneratorTrainingConfig,
    sample_generator,
    train_generator,
)
from mind_the_gap.pipelines.generator_training.pipeline import create_pipeline

from ..conftest import striped_images

TINY = GeneratorTrainingConfig(
    diffusion=ClassDiffusionConfig(block_out_channels=(8, 16), norm_num_groups=4, steps=3, batch_size=8, warmup_steps=1)
)


def test_disabled_generator_trains_nothing_and_draws_an_empty_grid(tmp_path: Path):
    disabled = TINY.model_copy(update={"enabled": False})
    assert train_generator(striped_images(6, size=16), disabled, tmp_path) == {"path": None}
    assert not any(tmp_path.iterdir())
    figure = sample_generator({"path": None}, striped_images(2), disabled)
    assert not any(ax.images for ax in figure.axes)


def test_samples_show_each_class_of_a_trained_generator(tmp_path: Path, mlflow_in_tmp):
    pool, config = striped_images(6, size=16), TINY.model_copy(update={"grid_per_class": 3})
    model = train_generator(pool, config, tmp_path / "generators")
    assert not model["reused"]
    assert train_generator(pool, config, tmp_path / "generators") == {**model, "reused": True}
    figure = sample_generator(model, pool, config)
    assert sum(bool(ax.images) for ax in figure.axes) == 3 * pool.num_classes


def test_generator_training_runs_on_a_fresh_checkout():
    """It needs only the generator pool: no student of another pipeline (that made a cycle and a failed run)."""
    assert create_pipeline().inputs() == {"real_generator_pool", "generator_models_dir", "params:generator_training"}
