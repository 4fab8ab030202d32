"""The offline generator: a class-conditional diffusion model trained on the generator pool of real images.

No student ever trains on the generator pool, so a synthetic student learns from the generator alone. How well
the generated images carry their class ("recognisability") is measured with a real-trained baseline student.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import mlflow
import pandas as pd
import torch
from pydantic import Field

from mind_the_gap.config import Config
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.generators.class_diffusion import (
    ClassDiffusionConfig,
    ClassDiffusionGenerator,
    ClassDiffusionModel,
    train_class_diffusion,
)
from mind_the_gap.generators.store import plan_requests
from mind_the_gap.models.students import StudentConfig
from mind_the_gap.tracking import flatten
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.engine import evaluate
from mind_the_gap.training.students import StudentStore, fingerprint

log = logging.getLogger(__name__)

# Seeds of recognisability images live far from those of the training data the `generation` pipeline makes.
RECOGNISABILITY_SEED = 1_000_003


class GeneratorTrainingConfig(Config):
    enabled: bool = Field(True, description="false where a pretrained backend (Stable Diffusion) needs none")
    diffusion: ClassDiffusionConfig = ClassDiffusionConfig()
    recognisability_per_class: int = Field(100, ge=1)
    grid_per_class: int = Field(10, ge=1)


def train_generator(pool: ImageSet, config: GeneratorTrainingConfig, models_dir: Path) -> dict[str, Any]:
    """Train the generator, or reuse the one trained before from the same pool and parameters."""
    if not config.enabled:
        return {"path": None}
    if len(pool) == 0:
        raise ValueError("the generator pool is empty: set dataset.split.generator_pool above 0")
    digest = json.dumps({"diffusion": config.diffusion.model_dump(mode="json"), "pool": fingerprint(pool)})
    key = hashlib.sha256(digest.encode()).hexdigest()[:16]
    directory = models_dir / key
    if directory.is_dir():
        log.info("reusing the generator trained before: %s", directory)
        return {"path": str(directory), "key": key, "reused": True}

    with mlflow.start_run(run_name="generator_training/class_diffusion", nested=mlflow.active_run() is not None,
                          tags={"pipeline": "generator_training", "variant": "class_diffusion"}):  # fmt: skip
        mlflow.log_params({k: str(v)[:6000] for k, v in flatten(config.diffusion.model_dump(mode="json")).items()})
        mlflow.log_params({"pool_images": len(pool), "generator_key": key})
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


def measure_recognisability(
    generator_model: dict[str, Any],
    baseline_runs: pd.DataFrame,
    student_store: Path,
    real_test: ImageSet,
    student: StudentConfig,
    training: TrainConfig,
    config: GeneratorTrainingConfig,
) -> tuple[pd.DataFrame, dict[str, dict[str, float]], plt.Figure]:
    """Accuracy of the first real-trained baseline student on generated images, per class, and a sample grid."""
    if generator_model.get("path") is None:
        empty = pd.DataFrame(columns=["class", "recognisability"])
        return empty, {}, _grid(torch.zeros(0, real_test.channels, 8, 8), [], real_test.class_names, 1)
    generator = ClassDiffusionGenerator(ClassDiffusionModel.load(Path(generator_model["path"])))
    names = real_test.class_names
    requests = plan_requests(names, config.recognisability_per_class, RECOGNISABILITY_SEED, lambda *_: "")
    images = torch.cat([generator.generate(requests[i : i + 500]) for i in range(0, len(requests), 500)])
    generated = ImageSet(images, torch.tensor([r.class_index for r in requests]), names)

    reference = baseline_runs.sort_values("seed").iloc[0]
    store = StudentStore(student_store)
    result = store.load_result(str(reference["student_key"]))
    if result is None:
        raise ValueError(f"baseline student {reference['student_key']} is not in {student_store}: run baselines")
    classifier = store.load_model(result.key, student, real_test)
    evaluation = evaluate(classifier, generated, result.normalization, training)

    table = pd.DataFrame({"class": names, "recognisability": evaluation.per_class_accuracy})
    metrics = {"recognisability": evaluation.top1, "recognisability_top5": evaluation.top5}
    metrics |= {f"recognisability_class/{i}": acc for i, acc in enumerate(evaluation.per_class_accuracy)}
    log.info("recognisability of generated images: %.4f (chance %.4f)", evaluation.top1, 1 / len(names))
    grid_index = [i for i, r in enumerate(requests) if r.index < config.grid_per_class]
    figure = _grid(images[grid_index], [requests[i].class_index for i in grid_index], names, config.grid_per_class)
    return table, {k: {"value": float(v), "step": 0} for k, v in metrics.items() if math.isfinite(v)}, figure


def _grid(images: torch.Tensor, labels: list[int], class_names: tuple[str, ...], per_class: int) -> plt.Figure:
    """One row of samples per class."""
    rows = max(1, len(class_names))
    figure, axes = plt.subplots(rows, per_class, figsize=(per_class * 0.9, rows * 0.95), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    seen = [0] * len(class_names)
    for image, label in zip(images, labels, strict=True):
        if seen[label] < per_class:
            ax = axes[label][seen[label]]
            ax.imshow(image.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray" if image.shape[0] == 1 else None)
            seen[label] += 1
    for label, name in enumerate(class_names):
        axes[label][0].set_title(name, fontsize=7, loc="left")
    figure.tight_layout()
    return figure
