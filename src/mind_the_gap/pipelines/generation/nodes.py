"""Synthetic training data: generate (resumably, per image seeded) and pack the images as tensors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.experiments.study import as_metrics
from mind_the_gap.generators.config import GenerationConfig
from mind_the_gap.generators.synthesis import SetShape, generate_set, load_set


def generate_synthetic_images(
    generation: GenerationConfig, generator_model: dict[str, Any], real_train: ImageSet, output_dir: Path
) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """The manifest of the generated set (see ``generate_set``), and the run's counts and speed for MLflow; the real
    images are read only by the backends that start from them (img2img, unCLIP)."""
    manifest, stats = generate_set(generation, generator_model, SetShape.of(real_train), output_dir, real_train)
    metrics = {
        "images": stats.generated,
        "images_reused": stats.skipped,
        "seconds": stats.seconds,
        "images_per_second": stats.images_per_second,
    }
    return manifest, as_metrics(metrics)


def pack_synthetic_images(
    manifest: pd.DataFrame, output_dir: Path, real_train: ImageSet, generation: GenerationConfig
) -> ImageSet:
    """The generated images as tensors at the real data's size and channels, labelled as the real classes."""
    return load_set(manifest, output_dir, real_train, generation)
