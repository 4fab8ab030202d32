"""The offline generator: trained once per pool and settings, in an MLflow run, and stored whole or not at all."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch

from mind_the_gap.generators.class_diffusion import ClassDiffusionConfig, ClassDiffusionModel
from mind_the_gap.generators.offline import draw_samples, save_in_place, train_or_reuse

from ..conftest import striped_images

TINY = ClassDiffusionConfig(block_out_channels=(8, 16), norm_num_groups=4, steps=3, batch_size=8, warmup_steps=1)


def test_a_trained_generator_is_reused_until_its_inputs_change(tmp_path: Path, mlflow_in_tmp):
    pool, models = striped_images(6, size=16), tmp_path / "generators"
    first = train_or_reuse(pool, TINY, models)
    assert not first["reused"]
    assert (Path(first["path"]) / "unet.safetensors").is_file()
    assert train_or_reuse(pool, TINY, models) == {**first, "reused": True}
    assert train_or_reuse(pool, TINY.model_copy(update={"steps": 4}), models)["key"] != first["key"]
    assert train_or_reuse(striped_images(6, size=16, seed=1), TINY, models)["key"] != first["key"]
    assert not list(models.glob(".*"))  # no staging folder left behind
    runs = mlflow.search_runs(experiment_names=["Default"], filter_string="tags.pipeline = 'generator_training'")
    assert len(runs) == 3
    assert runs["metrics.train_seconds"].gt(0).all()
    assert sorted(runs["params.generator_key"]) == sorted(folder.name for folder in models.iterdir())


def test_auto_precision_keys_the_generator_by_the_precision_it_gives(tmp_path: Path, mlflow_in_tmp, monkeypatch):
    pool, models = striped_images(6, size=16), tmp_path / "generators"
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {})  # float32 here
    without_bf16 = train_or_reuse(pool, TINY, models)
    assert train_or_reuse(pool, TINY.model_copy(update={"precision": "float32"}), models)["reused"]
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True})  # bfloat16 here
    with_bf16 = train_or_reuse(pool, TINY, models)
    assert not with_bf16["reused"]
    assert with_bf16["key"] != without_bf16["key"]


def trained(tmp_path: Path) -> Path:
    return Path(train_or_reuse(striped_images(6, size=16), TINY, tmp_path / "trained")["path"])


def test_saving_replaces_what_a_killed_run_left_in_staging(tmp_path: Path, mlflow_in_tmp):
    model = ClassDiffusionModel.load(trained(tmp_path))
    stale = tmp_path / "models" / ".abc.killed"
    stale.mkdir(parents=True)
    (stale / "unet.safetensors").write_bytes(b"half")
    saved = save_in_place(model, tmp_path / "models", "abc")
    assert saved == tmp_path / "models" / "abc"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["abc"]
    assert ClassDiffusionModel.load(saved).fingerprint() == model.fingerprint()


def test_samples_are_drawn_class_by_class(tmp_path: Path, mlflow_in_tmp):
    pool = striped_images(6, size=16)
    images = draw_samples(trained(tmp_path), pool.class_names, 3)
    assert images.shape == (3 * pool.num_classes, 1, 16, 16)
    assert images.dtype == torch.uint8


def test_an_empty_pool_is_refused(tmp_path: Path):
    empty = striped_images(6).subset(striped_images(6).labels < 0)
    with pytest.raises(ValueError, match="generator pool is empty"):
        train_or_reuse(empty, TINY, tmp_path)
