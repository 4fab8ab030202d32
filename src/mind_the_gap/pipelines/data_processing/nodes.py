"""Real data: read the configured source once and split it into the sets every experiment shares."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.data.prepare import SPLITS, DatasetConfig, load_source, prepare_splits
from mind_the_gap.results.figures import sample_grid
from mind_the_gap.training.engine import Normalization

SAMPLES_PER_CLASS = 10  # real training images per class in the sample grid, as the synthetic grid shows


def prepare_real_data(dataset: DatasetConfig) -> tuple[ImageSet, ImageSet, ImageSet, ImageSet]:
    """The generator pool, the students' real training pool, the validation set and the test set."""
    train, test = load_source(dataset)
    splits = prepare_splits(train, test, dataset)
    return tuple(splits[name] for name in SPLITS)


def describe_real_data(generator_pool: ImageSet, train: ImageSet, val: ImageSet, test: ImageSet) -> pd.DataFrame:
    """Images per class in each split: the table to check a split at a glance."""
    parts = (generator_pool, train, val, test)
    table = pd.DataFrame(
        {name: part.class_counts().numpy() for name, part in zip(SPLITS, parts, strict=True)},
        index=pd.Index(train.class_names, name="class"),
    )
    return table.reset_index()


def measure_real_statistics(train: ImageSet) -> dict[str, list[float]]:
    """Per-channel mean and standard deviation of the real training pool: the one input normalisation every
    student uses by default (``training.normalization: real``)."""
    statistics = Normalization.of(train)
    return {"mean": list(statistics.mean), "std": list(statistics.std)}


def draw_real_samples(train: ImageSet) -> plt.Figure:
    """The first real training images of every class, one row per class: the synthetic grid's counterpart."""
    return sample_grid(train.images, train.labels, train.class_names, SAMPLES_PER_CLASS)
