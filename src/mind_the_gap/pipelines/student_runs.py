"""What every experiment that trains students shares: a cell's students, one MLflow run each, and the summary.

An experiment is a grid of cells (a baseline variant, a layer-swap arrangement, a data-efficiency strategy);
each cell is a namespace of its pipeline and trains a list of students (over seeds and the cell's own settings),
described by ``StudentJob``s and trained here, each as a nested MLflow run.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field

from mind_the_gap.config import Config
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.devices import concurrent_workers, map_concurrently, resolve_device
from mind_the_gap.models.architectures import StudentConfig, UnitNet
from mind_the_gap.reporting import summarize
from mind_the_gap.tracking import MlflowStudentRun, metric_name
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.engine import Normalization, planned_steps
from mind_the_gap.training.student_cache import StudentResult, StudentStore, train_student
from mind_the_gap.training.transfer import Transfer

METRICS = ["test_accuracy", "test_top5_accuracy", "val_accuracy", "train_accuracy", "train_seconds"]


class SeedsConfig(Config):
    """How many students each cell trains per setting: one per seed."""

    seeds: list[int] = Field([0, 1, 2], min_length=1)


@dataclass(frozen=True)
class StudentJob:
    """One student of a cell: its run name, seed, training set, optional parent, and the cell's columns."""

    name: str
    seed: int
    train: ImageSet
    transfer: Transfer | None = None
    columns: Mapping[str, Any] = field(default_factory=dict)  # in the runs table and as MLflow tags
    training: TrainConfig | None = None  # the cell's recipe, where it differs from the shared one


def train_cell(
    pipeline: str,
    cell: str,
    jobs: Iterable[StudentJob],
    val: ImageSet,
    test: ImageSet,
    store: Path,
    student: StudentConfig,
    training: TrainConfig,
    real_statistics: dict[str, list[float]],
) -> pd.DataFrame:
    """Train (or reuse) every student of a cell, each a nested MLflow run; one row per student.

    ``training.concurrent_students`` students train at once (the longest first), each logging to its own run.
    """
    real = Normalization(tuple(real_statistics["mean"]), tuple(real_statistics["std"]))
    cell_jobs = []  # MLflow runs created here, under the `kedro run`'s run, whichever thread then trains the student
    for job in jobs:
        recipe = job.training or training
        normalization = Normalization.resolve(recipe.normalization, job.train, real)
        params = {
            "student": student.model_dump(mode="json"),
            "training": recipe.model_dump(mode="json"),
            "seed": job.seed,
            "data": {
                "train_images": len(job.train),
                "val_images": len(val),
                "test_images": len(test),
                "image_size": job.train.image_size[0],
                "channels": job.train.channels,
                "num_classes": job.train.num_classes,
            },
            "normalization": {"mean": list(normalization.mean), "std": list(normalization.std)},
        }
        if job.transfer is not None:
            params["transfer"] = {
                "parent": job.transfer.parent,
                "kept": job.transfer.kept,
                **job.transfer.config.model_dump(),
            }
        tags = {"pipeline": pipeline, "cell": cell, **{k: str(v) for k, v in job.columns.items()}}
        cell_jobs.append((job, recipe, normalization, MlflowStudentRun(job.name, tags, params)))

    stop = threading.Event()  # set when a student of the cell fails or the run is interrupted

    def train(cell_job: tuple[StudentJob, TrainConfig, Normalization, MlflowStudentRun]) -> dict[str, Any]:
        job, recipe, normalization, run = cell_job
        with run:
            result = train_student(
                StudentStore(store),
                student,
                recipe,
                job.train,
                test,
                job.seed,
                normalization,
                val=val,
                transfer=job.transfer,
                tracker=_StopWhenAsked(run, stop, job.name),
                description=job.name,
            )
            run.log_result(result, test.class_names)
        return {
            "pipeline": pipeline,
            "cell": cell,
            **job.columns,
            "seed": job.seed,
            "student_key": result.key,
            "cache_hit": result.cache_hit,
            **result.metrics(),
        }

    workers = concurrent_workers(training.concurrent_students, resolve_device(training.device))
    steps = lambda cell_job: planned_steps(len(cell_job[0].train), cell_job[1])  # noqa: E731
    return pd.DataFrame(map_concurrently(train, cell_jobs, workers, cost=steps, on_failure=stop.set))


class StudentStopped(RuntimeError):
    """A student stopped after an epoch because another student of its cell failed or the run was interrupted."""


@dataclass
class _StopWhenAsked:
    """Logs a student's epochs and stops it after the one in progress once ``stop`` is set: its progress is saved
    by then, so the next run resumes it."""

    run: MlflowStudentRun
    stop: threading.Event
    name: str

    def log_epoch(self, record: dict[str, float]) -> None:
        self.run.log_epoch(record)
        if self.stop.is_set():
            raise StudentStopped(f"{self.name}: stopped after epoch {int(record['epoch'])}, as the run stops")


def summarize_runs(
    runs: pd.DataFrame, by: list[str], label: list[str] | None = None
) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Mean and 95% CI over seeds per group, as a table and as metrics for the `kedro run`'s MLflow run, named
    by the ``label`` columns (by default every ``by`` column but the pipeline): ``real.test_accuracy_mean``."""
    summary = summarize(runs, by=by, metrics=[m for m in METRICS if m in runs])
    label = label or [k for k in by if k != "pipeline"]
    metrics = {
        metric_name(".".join([*(str(getattr(row, k)) for k in label), column])): {
            "value": float(getattr(row, column)),
            "step": 0,
        }
        for row in summary.itertuples()
        for column in summary.columns
        if column.endswith(("_mean", "_ci95")) and pd.notna(getattr(row, column))
    }
    return summary, metrics


def parent_keys(runs: pd.DataFrame, seeds: Iterable[int], source: str, pipeline: str) -> dict[int, str]:
    """The key of the student of each seed in a cell's runs table; an error naming what to run for a missing seed."""
    keys = dict(zip(runs["seed"].astype(int), runs["student_key"].astype(str), strict=True))
    missing = sorted(set(seeds) - set(keys))
    if missing:
        raise ValueError(
            f"{pipeline} needs the {source} baseline students of seed(s) {missing}, which baselines did not train: "
            f"add them to baselines.seeds and run `kedro run --pipeline baselines`"
        )
    return keys


def load_students(
    runs: pd.DataFrame, seeds: Iterable[int], source: str, store: Path, student: StudentConfig, like: ImageSet
) -> dict[int, tuple[UnitNet, StudentResult]]:
    """The trained student of each seed in a cell's runs table, with what it measured, built for images like
    ``like``'s; an error naming what to run when one is missing."""
    cache, wanted = StudentStore(store), set(seeds)
    students = {}
    for seed, key in parent_keys(runs, wanted, source, "this analysis").items():
        if seed not in wanted:
            continue
        result = cache.load_result(key)
        if result is None:
            raise ValueError(f"the {source} student {key} of seed {seed} is not in {store}: run its pipeline again")
        students[seed] = (cache.load_model(key, student, like), result)
    return students


def bind(func: Callable[..., Any], **fixed: Any) -> Callable[..., Any]:
    """``func`` with some arguments fixed: one node function serves every cell of a grid.

    Unlike ``functools.partial`` it keeps the name, the docstring and, without the fixed arguments, the signature
    and type hints, which Kedro reads to map inputs and validate parameters.
    """

    signature = inspect.signature(func)
    signature = signature.replace(parameters=[p for p in signature.parameters.values() if p.name not in fixed])

    def bound(*args: Any, **kwargs: Any) -> Any:
        return func(**signature.bind(*args, **kwargs).arguments, **fixed)

    functools.update_wrapper(bound, func)
    bound.__signature__ = signature
    bound.__annotations__ = {k: v for k, v in func.__annotations__.items() if k not in fixed}
    return bound
