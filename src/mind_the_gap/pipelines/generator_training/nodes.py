"""The offline generator: a class-conditional diffusion model trained on the generator pool of real images.

No student ever trains on the generator pool, so a synthetic student learns from the generator alone. How well
the images students train on carry their class is measured by `baselines`, with a real-trained student.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import mlflow
import torch
from pydantic import Field

from mind_the_gap.config import Config
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.devices import resolve_device
from mind_the_gap.generators.class_diffusion import (
    ClassDiffusionConfig,
    ClassDiffusionGenerator,
    ClassDiffusionModel,
    resolve_precision,
    train_class_diffusion,
)
from mind_the_gap.generators.store import plan_requests
from mind_the_gap.reporting import sample_grid
from mind_the_gap.tracking import flatten

log = logging.getLogger(__name__)

# Seeds of sample images live far from those of the training data the `generation` pipeline makes.
SAMPLES_SEED = 1_000_003


class GeneratorTrainingConfig(Config):
    enabled: bool = Field(True, description="false where a pretrained backend (Stable Diffusion) needs none")
    diffusion: ClassDiffusionConfig = ClassDiffusionConfig()
    grid_per_class: int = Field(10, ge=1)


def train_generator(pool: ImageSet, config: GeneratorTrainingConfig, models_dir: Path) -> dict[str, Any]:
    """Train the generator, or reuse the one trained before from the same pool and parameters."""
    if not config.enabled:
        return {"path": None}
    if len(pool) == 0:
        raise ValueError("the generator pool is empty: set dataset.split.generator_pool above 0")
    # `auto` precision enters the key as the precision it gives on this machine.
    precision = resolve_precision(config.diffusion.precision, resolve_device("auto"))
    diffusion = config.diffusion.model_dump(mode="json") | {"precision": precision}
    digest = json.dumps({"diffusion": diffusion, "pool": pool.fingerprint()})
    key = hashlib.sha256(digest.encode()).hexdigest()[:16]
    directory = models_dir / key
    if directory.is_dir():
        log.info("reusing the generator trained before: %s", directory)
        return {"path": str(directory), "key": key, "reused": True}

    with mlflow.start_run(
        run_name="generator_training/class_diffusion",
        nested=mlflow.active_run() is not None,
        tags={"pipeline": "generator_training", "cell": "class_diffusion"},
    ):
        mlflow.log_params({k: str(v)[:6000] for k, v in flatten(config.diffusion.model_dump(mode="json")).items()})
        mlflow.log_params({"pool_images": len(pool), "generator_key": key, "resolved_precision": precision})
        start = time.perf_counter()
        model = train_class_diffusion(pool, config.diffusion, on_log=lambda step, m: mlflow.log_metrics(m, step=step))
        seconds = time.perf_counter() - start
        mlflow.log_metric("train_seconds", seconds)
        log.info("generator trained in %.0f s (%d steps)", seconds, config.diffusion.steps)
        # Saved beside its final place and renamed, so that a killed run never leaves a half-written model;
        # what a killed run left in its staging folder is removed here.
        models_dir.mkdir(parents=True, exist_ok=True)
        for stale in models_dir.glob(f".{key}.*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(dir=models_dir, prefix=f".{key}."))
        try:
            model.save(staging)
            os.replace(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return {"path": str(directory), "key": key, "reused": False}


def sample_generator(
    generator_model: dict[str, Any], real_pool: ImageSet, config: GeneratorTrainingConfig
) -> plt.Figure:
    """A grid of fresh samples per class, to see what the generator learnt before generating a whole set."""
    names = real_pool.class_names
    if generator_model.get("path") is None:
        return sample_grid(torch.zeros(0, real_pool.channels, 8, 8), torch.zeros(0, dtype=torch.long), names, 1)
    generator = ClassDiffusionGenerator(ClassDiffusionModel.load(Path(generator_model["path"])))
    requests = plan_requests(names, config.grid_per_class, SAMPLES_SEED, lambda *_: "")
    labels = torch.tensor([r.class_index for r in requests])
    return sample_grid(generator.generate(requests), labels, names, config.grid_per_class)
