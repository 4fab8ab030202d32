"""One MLflow run per trained student, nested under the run of the `kedro run` that trains it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import mlflow
import pandas as pd

from mind_the_gap.reporting import confusion_figure
from mind_the_gap.training.student_cache import StudentResult


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested parameters as dotted keys: {"training": {"lr": 0.1}} -> {"training.lr": 0.1}."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def metric_name(text: str) -> str:
    """MLflow accepts letters, digits, _ - . / and spaces in metric names."""
    return re.sub(r"[^\w\-. /]", "_", text)


class MlflowStudentRun:
    """Context manager: a nested MLflow run that records one student's parameters, curves, metrics and figures."""

    def __init__(self, name: str, tags: Mapping[str, str], params: Mapping[str, Any]):
        self.name, self.tags = name, dict(tags)
        self.params = flatten(params)

    def __enter__(self) -> MlflowStudentRun:
        self.run = mlflow.start_run(run_name=self.name, nested=mlflow.active_run() is not None, tags=self.tags)
        mlflow.log_params({k: str(v)[:6000] for k, v in self.params.items()})
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        mlflow.end_run(status="FAILED" if exc_type else "FINISHED")

    def log_epoch(self, record: dict[str, float]) -> None:
        mlflow.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=int(record["epoch"]))

    def log_result(self, result: StudentResult, class_names: tuple[str, ...]) -> None:
        # At the last epoch's step, and only what the per-epoch curves do not already hold, so that every curve
        # runs from its first epoch to its last.
        last = result.history[-1]
        final = {name: value for name, value in result.metrics().items() if name not in last}
        mlflow.log_metrics(final, step=int(last["epoch"]))
        mlflow.log_metrics(
            {
                metric_name(f"test_accuracy_class/{name}"): acc
                for name, acc in zip(class_names, result.test.per_class_accuracy, strict=True)
            },
            step=int(last["epoch"]),
        )
        mlflow.set_tags({"student_key": result.key, "cache_hit": str(result.cache_hit).lower(),
                         "num_parameters": str(result.num_parameters)})  # fmt: skip
        figure = confusion_figure(result.test.confusion, class_names, f"{self.name}: real test set")
        mlflow.log_figure(figure, "confusion_matrix.png")
        plt.close(figure)
        mlflow.log_text(pd.DataFrame(result.history).to_csv(index=False), "history.csv")
        per_class = pd.DataFrame({"class": class_names, "test_accuracy": result.test.per_class_accuracy})
        mlflow.log_text(per_class.to_csv(index=False), "per_class_accuracy.csv")
