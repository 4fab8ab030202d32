"""The generator_training nodes: a trained generator is reused until its pool or parameters change."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch

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


@pytest.fixture
def tracking(tmp_path: Path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield
    mlflow.set_tracking_uri(None)


def test_a_trained_generator_is_reused_until_its_inputs_change(tmp_path: Path, tracking):
    pool = striped_images(6, size=16)
    first = train_generator(pool, TINY, tmp_path / "generators")
    assert not first["reused"] and (Path(first["path"]) / "unet.safetensors").is_file()
    assert train_generator(pool, TINY, tmp_path / "generators") == {**first, "reused": True}
    changed = TINY.model_copy(update={"diffusion": TINY.diffusion.model_copy(update={"steps": 4})})
    assert train_generator(pool, changed, tmp_path / "generators")["key"] != first["key"]
    other_pool = train_generator(striped_images(6, size=16, seed=1), TINY, tmp_path / "generators")
    assert other_pool["key"] != first["key"]
    assert not list((tmp_path / "generators").glob(".*"))  # no staging folder left behind
    run = mlflow.search_runs(experiment_names=["Default"], filter_string="tags.pipeline = 'generator_training'")
    assert len(run) == 3 and run["metrics.train_seconds"].gt(0).all()


def test_auto_precision_keys_the_generator_by_the_precision_it_gives(tmp_path: Path, tracking, monkeypatch):
    pool, models = striped_images(6, size=16), tmp_path / "generators"
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {})  # float32 here
    without_bf16 = train_generator(pool, TINY, models)
    as_float32 = TINY.model_copy(update={"diffusion": TINY.diffusion.model_copy(update={"precision": "float32"})})
    assert train_generator(pool, as_float32, models)["reused"]
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True})  # bfloat16 here
    with_bf16 = train_generator(pool, TINY, models)
    assert not with_bf16["reused"] and with_bf16["key"] != without_bf16["key"]


def test_disabled_generator_trains_nothing_and_draws_an_empty_grid(tmp_path: Path):
    disabled = TINY.model_copy(update={"enabled": False})
    assert train_generator(striped_images(6, size=16), disabled, tmp_path) == {"path": None}
    assert not any(tmp_path.iterdir())
    figure = sample_generator({"path": None}, striped_images(2), disabled)
    assert not any(ax.images for ax in figure.axes)


def test_samples_show_each_class_of_a_trained_generator(tmp_path: Path, tracking):
    pool = striped_images(6, size=16)
    model = train_generator(pool, TINY.model_copy(update={"grid_per_class": 3}), tmp_path)
    figure = sample_generator(model, pool, TINY.model_copy(update={"grid_per_class": 3}))
    assert sum(bool(ax.images) for ax in figure.axes) == 3 * pool.num_classes


def test_generator_training_runs_on_a_fresh_checkout():
    """It needs only the generator pool: no student of another pipeline (that made a cycle and a failed run)."""
    assert create_pipeline().inputs() == {"real_generator_pool", "generator_models_dir", "params:generator_training"}


def test_an_empty_pool_is_refused(tmp_path: Path):
    empty = striped_images(6).subset(striped_images(6).labels < 0)
    with pytest.raises(ValueError, match="generator pool is empty"):
        train_generator(empty, TINY, tmp_path)
