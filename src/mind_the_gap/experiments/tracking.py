"""One MLflow run per trained student, nested under the run of the `kedro run` that trains it."""

from __future__ import annotations

import re
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from mlflow.utils.validation import MAX_METRICS_PER_BATCH
from mlflow.utils.validation import MAX_PARAMS_TAGS_PER_BATCH as MAX_PARAMS_PER_BATCH

from mind_the_gap.config import flatten
from mind_the_gap.results.figures import confusion_figure
from mind_the_gap.training.student_cache import StudentResult


def metric_name(text: str) -> str:
    """MLflow accepts letters, digits, _ - . / and spaces in metric names."""
    return re.sub(r"[^\w\-. /]", "_", text)


class MlflowStudentRun:
    """Context manager: an MLflow run that records one student's parameters, curves, metrics and figures.

    It is nested under the run active where it is created (the `kedro run`'s) and logs through the client by run
    id, never through MLflow's per-thread active run, so students trained in concurrent threads log side by side;
    one lock keeps the tracking database to one writer at a time.

    Each write to the database costs a transaction, so metrics that arrive together go in one write: the epochs a
    stored student replays at once, and its final metrics with them. A student in training writes each epoch as it
    ends (epochs are more than ``LIVE_SECONDS`` apart), so its curves grow live in the MLflow UI.
    """

    _database = threading.Lock()
    LIVE_SECONDS = 1.0

    def __init__(self, name: str, tags: Mapping[str, str]):
        self.name, self.tags = name, dict(tags)
        self.params: dict[str, Any] = {}
        parent = mlflow.active_run()
        self.parent_run_id = parent.info.run_id if parent else None
        # Without an active run, the experiment MLflow would start one in (MLFLOW_EXPERIMENT_NAME/ID or the default).
        self.experiment_id = parent.info.experiment_id if parent else mlflow.tracking.fluent._get_experiment_id()
        self.client = MlflowClient()
        self._pending: list[Metric] = []
        self._written = time.monotonic()

    def start(self, params: Mapping[str, Any]) -> MlflowStudentRun:
        """The run, to enter with ``with``, that records ``params`` when it starts (they are known once the student's
        training set is gathered, in the thread that trains it)."""
        self.params = flatten(params)
        return self

    def __enter__(self) -> MlflowStudentRun:
        tags = self.tags | ({MLFLOW_PARENT_RUN_ID: self.parent_run_id} if self.parent_run_id else {})
        params = [Param(k, str(v)[:6000]) for k, v in self.params.items()]
        with self._database:
            self.run = self.client.create_run(self.experiment_id, tags=tags, run_name=self.name)
            for start in range(0, len(params), MAX_PARAMS_PER_BATCH):
                self.client.log_batch(self.run.info.run_id, params=params[start : start + MAX_PARAMS_PER_BATCH])
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        with self._database:
            self._write_pending()
            self.client.set_terminated(self.run.info.run_id, "FAILED" if exc_type else "FINISHED")

    def _queue(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), now, step) for k, v in metrics.items()]

    def _write_pending(self) -> None:
        """Write the queued metrics; the caller holds the database lock."""
        batch, self._pending = self._pending, []
        for start in range(0, len(batch), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run.info.run_id, metrics=batch[start : start + MAX_METRICS_PER_BATCH])
        self._written = time.monotonic()

    def log_epoch(self, record: dict[str, float]) -> None:
        self._queue({k: v for k, v in record.items() if k != "epoch"}, step=int(record["epoch"]))
        if time.monotonic() - self._written >= self.LIVE_SECONDS:
            with self._database:
                self._write_pending()

    def log_result(self, result: StudentResult, class_names: tuple[str, ...]) -> None:
        # At the last epoch's step, and only what the per-epoch curves do not already hold, so that every curve
        # runs from its first epoch to its last.
        last = result.history[-1]
        final = {name: value for name, value in result.metrics().items() if name not in last}
        per_class = {
            metric_name(f"test_accuracy_class/{name}"): acc
            for name, acc in zip(class_names, result.test.per_class_accuracy, strict=True)
        }
        self._queue(final | per_class, step=int(last["epoch"]))
        run_id = self.run.info.run_id
        table = pd.DataFrame({"class": class_names, "test_accuracy": result.test.per_class_accuracy})
        tags = {
            "student_key": result.key,
            "cache_hit": str(result.cache_hit).lower(),
            "num_parameters": str(result.num_parameters),
        }
        with tempfile.TemporaryDirectory() as folder:
            # Drawn before taking the lock, so that another student's run writes meanwhile.
            confusion = Path(folder) / "confusion_matrix.png"
            figure = confusion_figure(result.test.confusion, class_names, f"{self.name}: real test set")
            figure.savefig(confusion)
            plt.close(figure)
            with self._database:
                self._write_pending()
                self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
                self.client.log_artifact(run_id, str(confusion))
                self.client.log_text(run_id, pd.DataFrame(result.history).to_csv(index=False), "history.csv")
                self.client.log_text(run_id, table.to_csv(index=False), "per_class_accuracy.csv")
