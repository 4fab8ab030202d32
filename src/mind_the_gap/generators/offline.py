"""The offline generator: a class-conditional diffusion model trained on the generator pool of real images, once per
pool and settings, and stored under a key of both.

No student ever trains on the generator pool, so a synthetic student learns from the generator alone.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
import torch
from pydantic import Field

from mind_the_gap.config import Config, flatten
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.devices import resolve_device, resolve_precision
from mind_the_gap.generators.class_diffusion import (
    ClassDiffusionConfig,
    ClassDiffusionGenerator,
    ClassDiffusionModel,
    dtype_name,
    train_class_diffusion,
)
from mind_the_gap.generators.store import plan_requests
from mind_the_gap.keys import content_key

log = logging.getLogger(__name__)

# Seeds of sample images live far from those of the training data the `generation` pipeline makes.
SAMPLES_SEED = 1_000_003


class GeneratorTrainingConfig(Config):
    enabled: bool = Field(True, description="false where a pretrained backend (Stable Diffusion) needs none")
    diffusion: ClassDiffusionConfig = ClassDiffusionConfig()
    grid_per_class: int = Field(10, ge=1)


def generator_key(pool: ImageSet, diffusion: ClassDiffusionConfig, precision: str) -> str:
    """The key of a generator trained on ``pool`` with ``diffusion`` in ``precision`` (what ``auto`` gives here)."""
    settings = diffusion.model_dump(mode="json") | {"precision": precision}
    # Unsorted keys and json's default separators: the form the stored generators' keys were made with.
    return content_key({"diffusion": settings, "pool": pool.fingerprint()}, 16)


def train_or_reuse(pool: ImageSet, diffusion: ClassDiffusionConfig, models_dir: Path) -> dict[str, Any]:
    """The generator trained on ``pool`` with ``diffusion`` in ``models_dir/<key>``: trained now, in an MLflow run,
    unless one was trained before from the same pool and settings. Returns its path, key and whether it was reused."""
    if len(pool) == 0:
        raise ValueError("the generator pool is empty: set dataset.split.generator_pool above 0")
    # `auto` precision enters the key as the precision it gives on this machine.
    precision = dtype_name(resolve_precision(diffusion.precision, resolve_device("auto", "device")))
    key = generator_key(pool, diffusion, precision)
    directory = models_dir / key
    if directory.is_dir():
        log.info("reusing the generator trained before: %s", directory)
        return {"path": str(directory), "key": key, "reused": True}

    with mlflow.start_run(
        run_name="generator_training/class_diffusion",
        nested=mlflow.active_run() is not None,
        tags={"pipeline": "generator_training", "cell": "class_diffusion"},
    ):
        mlflow.log_params({k: str(v)[:6000] for k, v in flatten(diffusion.model_dump(mode="json")).items()})
        mlflow.log_params({"pool_images": len(pool), "generator_key": key, "resolved_precision": precision})
        start = time.perf_counter()
        model = train_class_diffusion(pool, diffusion, on_log=lambda step, m: mlflow.log_metrics(m, step=step))
        seconds = time.perf_counter() - start
        mlflow.log_metric("train_seconds", seconds)
        log.info("generator trained in %.0f s (%d steps)", seconds, diffusion.steps)
        save_in_place(model, models_dir, key)
    return {"path": str(directory), "key": key, "reused": False}


def save_in_place(model: ClassDiffusionModel, models_dir: Path, key: str) -> Path:
    """Save ``model`` as ``models_dir/<key>``: beside its final place first, then renamed, so that a killed run
    never leaves a half-written model; what a killed run left in its staging folder is removed here."""
    models_dir.mkdir(parents=True, exist_ok=True)
    for stale in models_dir.glob(f".{key}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=models_dir, prefix=f".{key}."))
    try:
        model.save(staging)
        os.replace(staging, models_dir / key)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return models_dir / key


def draw_samples(model_dir: Path, class_names: list[str] | tuple[str, ...], per_class: int) -> torch.Tensor:
    """``per_class`` fresh images of every class, class by class, from the generator stored in ``model_dir``."""
    generator = ClassDiffusionGenerator(ClassDiffusionModel.load(model_dir))
    return generator.generate(plan_requests(class_names, per_class, SAMPLES_SEED, lambda *_: ""))
