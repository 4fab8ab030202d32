"""What every experiment that trains students shares: the study, its students as jobs, a cell of them trained, and
the summary.

An experiment is a grid of cells (a baseline variant, a layer-swap arrangement, a data-efficiency strategy); each
cell trains a list of students (over seeds and the cell's own settings), each described by a ``StudentJob`` that
names its training data and is trained here, each as a nested MLflow run. Nothing here needs Kedro: a notebook
builds a ``Study``, plans jobs with an experiment's ``plan`` and calls ``train_cell``.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from pydantic import Field

from mind_the_gap.analysis.statistics import summarize
from mind_the_gap.config import Config
from mind_the_gap.data.imageset import ImageSet, ImageView, TrainingImages
from mind_the_gap.devices import concurrent_workers, map_concurrently, resolve_device
from mind_the_gap.experiments.executor import (
    WORKER_TAG,
    SetFile,
    map_on_cluster,
    on_cluster,
    report_student,
    set_file,
    worker_address,
)
from mind_the_gap.experiments.progress import StudentProgress, cell_progress
from mind_the_gap.experiments.tracking import MlflowStudentRun, metric_name
from mind_the_gap.models.architectures import StudentConfig, UnitNet
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.distillation import Teacher
from mind_the_gap.training.engine import Normalization, planned_steps
from mind_the_gap.training.stitching import Stitch
from mind_the_gap.training.student_cache import StudentResult, StudentStore, stitch_normalization, train_student
from mind_the_gap.training.transfer import Transfer

METRICS = ["test_accuracy", "test_top5_accuracy", "val_accuracy", "train_accuracy", "train_seconds"]


class SeedsConfig(Config):
    """How many students each cell trains per setting: one per seed."""

    seeds: list[int] = Field([0, 1, 2], min_length=1)


@dataclass(frozen=True)
class Study:
    """What every student of a study shares: the real validation and test sets, the store of trained students, the
    student and its training recipe, and the real training pool's statistics (every student's input normalisation
    by default)."""

    val: ImageSet
    test: ImageSet
    store: Path
    student: StudentConfig
    training: TrainConfig
    real_statistics: Normalization

    @property
    def students(self) -> StudentStore:
        return StudentStore(self.store)


def build_study(
    val: ImageSet,
    test: ImageSet,
    store: Path,
    real_statistics: Mapping[str, Sequence[float]],
    student: StudentConfig,
    training: TrainConfig,
) -> Study:
    """The study from its parts as the catalog stores them."""
    statistics = Normalization(tuple(real_statistics["mean"]), tuple(real_statistics["std"]))
    return Study(val, test, Path(store), student, training, statistics)


class SetsOnDemand(Mapping[str, ImageSet]):
    """Stored sets by name, each read when a student needs it and kept while it is among the ``keep`` most recently
    used, so that a factor's generated sets are never all in memory at once (a set a student trains on stays while
    it trains: students training side by side may hold one more each); their sizes are known without reading.
    """

    def __init__(self, loaders: Mapping[str, Callable[[], ImageSet]], sizes: Mapping[str, int], keep: int = 1):
        self._loaders, self._sizes, self._keep = dict(loaders), dict(sizes), keep
        self._recent: OrderedDict[str, ImageSet] = OrderedDict()
        self._lock = threading.Lock()  # students of a cell ask from several threads

    def __getitem__(self, name: str) -> ImageSet:
        load = self._loaders[name]
        with self._lock:
            if name not in self._recent:
                while len(self._recent) >= self._keep:  # room first: the sets released are not held while it loads
                    self._recent.popitem(last=False)
                self._recent[name] = load()
            self._recent.move_to_end(name)
            return self._recent[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)

    def size(self, name: str) -> int:
        return self._sizes[name]

    def after(self, sets: Mapping[str, ImageSet]) -> SetsOnDemand:
        """These sets, already in memory, first; then this mapping's."""
        loaders = {name: (lambda data=data: data) for name, data in sets.items()} | self._loaders
        return SetsOnDemand(loaders, {name: len(data) for name, data in sets.items()} | self._sizes, self._keep)


@dataclass(frozen=True)
class SetView:
    """The images of the stored set ``name`` at ``index`` (every image, in order, where ``index`` is None)."""

    name: str
    index: torch.Tensor | None = None

    def size(self, sets: Mapping[str, ImageSet]) -> int:
        if self.index is not None:
            return len(self.index)
        return sets.size(self.name) if isinstance(sets, SetsOnDemand) else len(sets[self.name])

    def whole(self, sets: Mapping[str, ImageSet]) -> bool:
        """Whether the view is its set, every image in order: the set itself serves, with no copy."""
        return self.index is None or torch.equal(self.index, torch.arange(len(sets[self.name])))


@dataclass(frozen=True)
class StudentJob:
    """One student of a cell: its run name, seed, training data (views of stored sets, joined in order), optional
    parent, the cell's columns, where it differs from the study's its training recipe, an optional teacher
    whose predictions it learns instead of the labels, and an optional stitch (two stored students joined by a
    trained stitching layer, nothing else trained).

    A job names its data, it does not hold it: the images are gathered when the student trains.
    """

    name: str
    seed: int
    train: tuple[SetView, ...]
    transfer: Transfer | None = None
    columns: Mapping[str, Any] = field(default_factory=dict)  # in the runs table and as MLflow tags
    training: TrainConfig | None = None
    teacher: Teacher | None = None
    stitch: Stitch | None = None

    def size(self, sets: Mapping[str, ImageSet]) -> int:
        return sum(view.size(sets) for view in self.train)

    def training_set(self, sets: Mapping[str, ImageSet]) -> TrainingImages:
        """The images the student trains on: a stored set itself, or a view of sets that copies no image (its
        fingerprint derived from its sets' without hashing the images)."""
        if len(self.train) == 1 and self.train[0].whole(sets):
            return sets[self.train[0].name]
        return ImageView(tuple((sets[v.name], None if v.whole(sets) else v.index) for v in self.train))


def views(name: str, index: torch.Tensor | None = None) -> tuple[SetView, ...]:
    """A job's training data when it is one view of one stored set."""
    return (SetView(name, index),)


RUNS_COLUMNS = ["pipeline", "cell", "seed", "student_key", "cache_hit"]  # besides the jobs' and the results' own


def train_cell(
    study: Study, pipeline: str, cell: str, jobs: Iterable[StudentJob], sets: Mapping[str, ImageSet]
) -> pd.DataFrame:
    """Train (or reuse) every student of a cell, each a nested MLflow run; one row per student.

    ``sets`` holds the stored sets the jobs name. Here, ``training.concurrent_students`` students train at once (the
    longest first), each logging to its own run, with a log line as it starts and ends that counts the run's
    students (``progress``); in a cell the Dask runner started, each student is a task on its cluster
    (``executor.map_on_cluster``), reading the sets as files written beside the student store.
    """
    jobs = list(jobs)
    if not jobs:  # a cell whose factor is off: a table with the columns every runs table has, no rows
        return pd.DataFrame(columns=RUNS_COLUMNS)
    # MLflow runs are created here, under the run active in this thread (the `kedro run`'s), whichever thread or
    # worker then trains the student.
    tags = [{"pipeline": pipeline, "cell": cell, **{k: str(v) for k, v in job.columns.items()}} for job in jobs]
    students = [(job, MlflowStudentRun(job.name, job_tags)) for job, job_tags in zip(jobs, tags, strict=True)]
    steps = lambda student: planned_steps(student[0].size(sets), student[0].training or study.training)  # noqa: E731
    if on_cluster():
        folder = study.store / "sets"
        files = {name: set_file(sets[name], folder) for name in sorted({v.name for job in jobs for v in job.train})}
        # The study as a worker receives it: its store by absolute path, its val and test sets as files.
        shipped = replace(
            study, store=study.store.resolve(), val=set_file(study.val, folder), test=set_file(study.test, folder)
        )
        train = partial(_train_from_files, shipped, pipeline, cell, files)
        reported = partial(_reported_on_cluster, f"{pipeline}.{cell}", train)
        return pd.DataFrame(map_on_cluster(reported, students, [job.name for job in jobs], cost=steps))
    stop = threading.Event()  # set when a student of the cell fails or the run is interrupted
    workers = concurrent_workers(
        study.training.concurrent_students, resolve_device(study.training.device, allow_cpu=study.training.allow_cpu)
    )
    train = partial(_train_student, study, pipeline, cell, sets, stop)
    progress = cell_progress({student[0].name: steps(student) for student in students})
    reported = partial(_reported, progress, f"{pipeline}.{cell}", train)
    return pd.DataFrame(map_concurrently(reported, students, workers, cost=steps, on_failure=stop.set))


def _reported(
    progress: StudentProgress,
    cell: str,
    train: Callable[[tuple[StudentJob, MlflowStudentRun]], dict[str, Any]],
    student: tuple[StudentJob, MlflowStudentRun],
) -> dict[str, Any]:
    """``train(student)``, logged as it starts and ends with the run's counts (see ``progress``)."""
    return progress.track(cell, student[0].name, partial(train, student), reused=lambda row: row["cache_hit"])


def _reported_on_cluster(
    cell: str,
    train: Callable[[tuple[StudentJob, MlflowStudentRun]], dict[str, Any]],
    student: tuple[StudentJob, MlflowStudentRun],
) -> dict[str, Any]:
    """On a Dask worker: ``train(student)``, its start and end reported to the run's driver, which counts them."""
    report = partial(report_student, cell, student[0].name)
    report("started")
    try:
        row = train(student)
    except BaseException:
        report("failed")
        raise
    report("reused" if row["cache_hit"] else "trained")
    return row


def _train_student(
    study: Study,
    pipeline: str,
    cell: str,
    sets: Mapping[str, ImageSet],
    stop: threading.Event,
    student: tuple[StudentJob, MlflowStudentRun],
) -> dict[str, Any]:
    """Train (or reuse) one student of a cell in its MLflow run; its row of the cell's runs table."""
    job, run = student
    recipe = job.training or study.training
    data = job.training_set(sets)
    normalization = Normalization.resolve(recipe.normalization, data, study.real_statistics)
    if job.stitch is not None:  # the images go through the bottom student first: its normalisation
        normalization = stitch_normalization(study.students, job.stitch)
    with run.start(_run_params(study, job, recipe, data, normalization)):
        result = train_student(
            study.students,
            study.student,
            recipe,
            data,
            study.test,
            job.seed,
            normalization,
            val=study.val,
            transfer=job.transfer,
            tracker=_StopWhenAsked(run, stop, job.name),
            description=job.name,
            teacher=job.teacher,
            stitch=job.stitch,
        )
        run.log_result(result, study.test.class_names)
    return {
        "pipeline": pipeline,
        "cell": cell,
        **job.columns,
        "seed": job.seed,
        "student_key": result.key,
        "cache_hit": result.cache_hit,
        **result.metrics(),
    }


def _train_from_files(
    shipped: Study,
    pipeline: str,
    cell: str,
    files: Mapping[str, SetFile],
    student: tuple[StudentJob, MlflowStudentRun],
) -> dict[str, Any]:
    """On a Dask worker: ``_train_student`` with the study's and the job's sets read from their files."""
    study = replace(shipped, val=shipped.val.load(), test=shipped.test.load())
    student[1].tags[WORKER_TAG] = worker_address()
    sets = {name: file.load() for name, file in files.items()}
    return _train_student(study, pipeline, cell, sets, threading.Event(), student)


def _run_params(
    study: Study, job: StudentJob, recipe: TrainConfig, data: TrainingImages, normalization: Normalization
) -> dict[str, Any]:
    """A student's MLflow parameters: what it is, what it learns from and how."""
    params = {
        "student": study.student.model_dump(mode="json"),
        "training": recipe.model_dump(mode="json"),
        "seed": job.seed,
        "data": {
            "train_images": len(data),
            "val_images": len(study.val),
            "test_images": len(study.test),
            "image_size": data.image_size[0],
            "channels": data.channels,
            "num_classes": data.num_classes,
        },
        "normalization": {"mean": list(normalization.mean), "std": list(normalization.std)},
    }
    if job.transfer is not None:
        params["transfer"] = {
            "parent": job.transfer.parent,
            "kept": job.transfer.kept,
            **job.transfer.config.model_dump(),
        }
    if job.teacher is not None:
        params["distillation"] = job.teacher.describe()
    if job.stitch is not None:
        params["stitch"] = job.stitch.describe()
    return params


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


def as_metrics(values: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Summary values as metrics of the `kedro run`'s MLflow run (finite ones, under names MLflow accepts)."""
    return {
        metric_name(name): {"value": float(value), "step": 0}
        for name, value in values.items()
        if value is not None and math.isfinite(float(value))
    }


def summarize_runs(
    runs: pd.DataFrame, by: list[str], label: list[str] | None = None
) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Mean and 95% CI over seeds per group, as a table and as metrics for the `kedro run`'s MLflow run, named
    by the ``label`` columns (by default every ``by`` column but the pipeline): ``real.test_accuracy_mean``."""
    summary = summarize(runs, by=by, metrics=[m for m in METRICS if m in runs])
    label = label or [k for k in by if k != "pipeline"]
    values = {
        ".".join([*(str(getattr(row, k)) for k in label), column]): getattr(row, column)
        for row in summary.itertuples()
        for column in summary.columns
        if column.endswith(("_mean", "_ci95")) and pd.notna(getattr(row, column))
    }
    return summary, as_metrics(values)


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
    runs: pd.DataFrame, seeds: Iterable[int], source: str, study: Study, like: ImageSet
) -> dict[int, tuple[UnitNet, StudentResult]]:
    """The trained student of each seed in a cell's runs table, with what it measured, built for images like
    ``like``'s; an error naming what to run when one is missing."""
    store, wanted = study.students, set(seeds)
    students = {}
    for seed, key in parent_keys(runs, wanted, source, "this analysis").items():
        if seed not in wanted:
            continue
        result = store.load_result(key)
        if result is None:
            raise ValueError(f"the {source} student {key} of seed {seed} is not in {study.store}: run its pipeline")
        students[seed] = (store.load_model(key, study.student, like), result)
    return students
