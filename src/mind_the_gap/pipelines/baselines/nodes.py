"""Baselines: students trained on one source each, the summary with each source's gap, and how recognisable the
synthetic training images are to a real-trained student."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from pydantic import Field

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.models.architectures import StudentConfig
from mind_the_gap.pipelines.student_runs import SeedsConfig, StudentJob, parent_keys, summarize_runs, train_cell
from mind_the_gap.reporting import sample_grid
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.engine import evaluate
from mind_the_gap.training.student_cache import StudentStore

log = logging.getLogger(__name__)


class BaselinesConfig(SeedsConfig):
    samples_per_class: int = Field(10, ge=1, description="synthetic training images per class in the sample grid")


def train_baselines(
    cell: str,
    train: ImageSet,
    val: ImageSet,
    test: ImageSet,
    store: Path,
    real_statistics: dict[str, list[float]],
    student: StudentConfig,
    training: TrainConfig,
    baselines: BaselinesConfig,
) -> pd.DataFrame:
    """One student per seed on the cell's training set, tested on the real test set."""
    jobs = [StudentJob(f"baselines/{cell}/seed{seed}", seed, train) for seed in baselines.seeds]
    return train_cell("baselines", cell, jobs, val, test, store, student, training, real_statistics)


def summarize_baselines(*runs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Mean ± 95% CI per cell; ``gap_pp``: how many points of test accuracy a cell loses to ``real``."""
    summary, metrics = summarize_runs(pd.concat(runs, ignore_index=True), by=["pipeline", "cell"])
    real = summary.loc[summary["cell"] == "real", "test_accuracy_mean"]
    if len(real):
        summary["gap_pp"] = 100 * (float(real.iloc[0]) - summary["test_accuracy_mean"])
        for row in summary.itertuples():
            if row.cell != "real":
                metrics[f"{row.cell}.gap_pp"] = {"value": float(row.gap_pp), "step": 0}
    return summary, metrics


def measure_recognisability(
    real_runs: pd.DataFrame,
    synthetic_train: ImageSet,
    store: Path,
    student: StudentConfig,
    training: TrainConfig,
    baselines: BaselinesConfig,
) -> tuple[pd.DataFrame, dict[str, dict[str, float]], plt.Figure]:
    """How well the synthetic training set carries its labels: the accuracy of the first seed's real-trained
    student on it, overall and per class (whatever backend made it), and a grid of its images per class."""
    seed = min(baselines.seeds)
    key = parent_keys(real_runs, [seed], "real", "measuring recognisability")[seed]
    cache = StudentStore(store)
    result = cache.load_result(key)
    if result is None:
        raise ValueError(f"the real baseline student {key} is not in {store}: run `kedro run --pipeline baselines`")
    judge = cache.load_model(key, student, synthetic_train)
    evaluation = evaluate(judge, synthetic_train, result.normalization, training)
    names = synthetic_train.class_names
    log.info("recognisability of the synthetic training images: %.4f (chance %.4f)", evaluation.top1, 1 / len(names))
    table = pd.DataFrame({"class": names, "recognisability": evaluation.per_class_accuracy})
    metrics = {"top1": evaluation.top1, "top5": evaluation.top5}
    metrics |= {f"class/{i}": accuracy for i, accuracy in enumerate(evaluation.per_class_accuracy)}
    grid = sample_grid(synthetic_train.images, synthetic_train.labels, names, baselines.samples_per_class)
    return table, {k: {"value": float(v), "step": 0} for k, v in metrics.items() if math.isfinite(v)}, grid
