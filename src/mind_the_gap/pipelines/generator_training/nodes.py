"""The offline generator: trained on the generator pool of real images (or reused), and a grid of its samples.

How well the images students train on carry their class is measured by `baselines`, with a real-trained student.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.generators.offline import GeneratorTrainingConfig, draw_samples, train_or_reuse
from mind_the_gap.results.figures import sample_grid


def train_generator(pool: ImageSet, config: GeneratorTrainingConfig, models_dir: Path) -> dict[str, Any]:
    """Train the generator, or reuse the one trained before from the same pool and parameters."""
    if not config.enabled:
        return {"path": None}
    return train_or_reuse(pool, config.diffusion, models_dir)


def sample_generator(
    generator_model: dict[str, Any], real_pool: ImageSet, config: GeneratorTrainingConfig
) -> plt.Figure:
    """A grid of fresh samples per class, to see what the generator learnt before generating a whole set."""
    names = real_pool.class_names
    if generator_model.get("path") is None:
        return sample_grid(torch.zeros(0, real_pool.channels, 8, 8), torch.zeros(0, dtype=torch.long), names, 1)
    images = draw_samples(Path(generator_model["path"]), names, config.grid_per_class)
    labels = torch.arange(len(names)).repeat_interleave(config.grid_per_class)
    return sample_grid(images, labels, names, config.grid_per_class)
