"""Baselines' nodes: the students of a cell, the summary, and the synthetic set's recognisability."""

from __future__ import annotations

import logging

import matplotlib.pyplot as plt
import pandas as pd

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.experiments import baselines
from mind_the_gap.experiments.baselines import BaselinesConfig
from mind_the_gap.experiments.study import Study, as_metrics, train_cell
from mind_the_gap.results.figures import sample_grid

log = logging.getLogger(__name__)


def train_baselines(cell: str, train: ImageSet, study: Study, config: BaselinesConfig) -> pd.DataFrame:
    """One student per seed on the cell's training set, tested on the real test set."""
    return train_cell(study, "baselines", cell, baselines.plan(cell, "train", config), {"train": train})


def summarize_baselines(*runs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Mean ± 95% CI per cell; ``gap_pp``: how many points of test accuracy a cell loses to ``real``."""
    return baselines.summarize(pd.concat(runs, ignore_index=True))


def measure_recognisability(
    real_runs: pd.DataFrame, synthetic_train: ImageSet, study: Study, config: BaselinesConfig
) -> tuple[pd.DataFrame, dict[str, dict[str, float]], plt.Figure]:
    """The first seed's real-trained student's accuracy on the synthetic training set, overall and per class, and a
    grid of its images per class."""
    evaluation = baselines.recognisability(real_runs, synthetic_train, study, config)
    names = synthetic_train.class_names
    log.info("recognisability of the synthetic training images: %.4f (chance %.4f)", evaluation.top1, 1 / len(names))
    table = pd.DataFrame({"class": names, "recognisability": evaluation.per_class_accuracy})
    per_class = {f"class/{i}": accuracy for i, accuracy in enumerate(evaluation.per_class_accuracy)}
    metrics = as_metrics({"top1": evaluation.top1, "top5": evaluation.top5, **per_class})
    grid = sample_grid(synthetic_train.images, synthetic_train.labels, names, config.samples_per_class)
    return table, metrics, grid
