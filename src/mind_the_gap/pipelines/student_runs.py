"""Node functions shared by every experiment that trains students: one factory, one summary.

Each experiment trains several variants (what the student learns from) over several seeds; each variant
becomes its own node, made here from the variant's name so that pipelines are generated from a mapping.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from mind_the_gap.config import Config
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.models.students import StudentConfig
from mind_the_gap.reporting import summarize
from mind_the_gap.tracking import MlflowStudentRun
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.students import StudentStore, train_student

METRICS = ["test_accuracy", "test_top5_accuracy", "val_accuracy", "train_seconds"]


class SeedsConfig(Config):
    """How many students each variant trains: one per seed."""

    seeds: list[int] = [0, 1, 2]


def make_student_trainer(pipeline: str, variant: str) -> Callable[..., pd.DataFrame]:
    """A node function that trains the ``variant`` students of ``pipeline``, one MLflow run per seed."""

    def train_students(
        train: ImageSet,
        val: ImageSet,
        test: ImageSet,
        store: Path,
        student: StudentConfig,
        training: TrainConfig,
        experiment: SeedsConfig,
    ) -> pd.DataFrame:
        rows = []
        for seed in experiment.seeds:
            name = f"{pipeline}/{variant}/seed{seed}"
            params = {
                "student": student.model_dump(mode="json"),
                "training": training.model_dump(mode="json"),
                "seed": seed,
                "data": {"train_images": len(train), "val_images": len(val), "test_images": len(test),
                         "image_size": train.image_size[0], "channels": train.channels,
                         "num_classes": train.num_classes},
            }  # fmt: skip
            with MlflowStudentRun(name, pipeline, variant, params) as run:
                result = train_student(StudentStore(store), student, training, train, test, seed, val=val, tracker=run,
                                       description=name)  # fmt: skip
                run.log_result(result, test.class_names)
            rows.append({"pipeline": pipeline, "variant": variant, "seed": seed, "student_key": result.key,
                         "cache_hit": result.cache_hit, **result.metrics()})  # fmt: skip
        return pd.DataFrame(rows)

    train_students.__name__ = train_students.__qualname__ = f"train_{variant}_students"
    return train_students


def summarize_students(*runs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Mean and 95% CI per variant over seeds, as a table and as metrics for the `kedro run`'s MLflow run."""
    table = pd.concat(runs, ignore_index=True)
    summary = summarize(table, by=["pipeline", "variant"], metrics=[m for m in METRICS if m in table])
    metrics = {
        f"{row.variant}.{column}": {"value": float(getattr(row, column)), "step": 0}
        for row in summary.itertuples()
        for column in summary.columns
        if column.endswith(("_mean", "_ci95")) and pd.notna(getattr(row, column))
    }
    return summary, metrics
