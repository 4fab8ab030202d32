"""One MLflow run per student: its curves run from the first epoch to the last, its final metrics sit at the last."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from mind_the_gap.devices import map_concurrently
from mind_the_gap.experiments import tracking
from mind_the_gap.experiments.tracking import MlflowStudentRun
from mind_the_gap.models.architectures import StudentConfig
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.engine import Normalization
from mind_the_gap.training.student_cache import StudentResult, StudentStore, train_student

from ..conftest import striped_images

EPOCHS = 3
STUDENT = StudentConfig(width=8)
FAST = TrainConfig(epochs=EPOCHS, batch_size=32, lr=0.05, warmup_epochs=0, amp="off", progress=False)
TAGS = {"pipeline": "baselines", "cell": "real", "source": "real"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowClient]:
    """One tracking database for the module: creating it takes seconds."""
    directory = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(directory)  # the default experiment keeps its artifacts under the working directory
        mlflow.set_tracking_uri(f"sqlite:///{directory}/mlflow.db")
        yield MlflowClient()
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(None)


def _tracked_student(store: StudentStore) -> tuple[str, StudentResult]:
    """Train (or reuse) a tiny student inside its own MLflow run, as every pipeline does; the run id and result."""
    train, val, test = striped_images(16), striped_images(4, seed=1), striped_images(4, seed=2)
    params = {"student": STUDENT.model_dump(mode="json"), "training": FAST.model_dump(mode="json"), "seed": 0}
    with MlflowStudentRun("real seed 0", TAGS).start(params) as run:
        result = train_student(store, STUDENT, FAST, train, test, 0, Normalization.of(train), val=val, tracker=run)
        run.log_result(result, test.class_names)
    return run.run.info.run_id, result


def _steps(client: MlflowClient, run_id: str, metric: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, metric))


def test_curves_span_the_epochs_and_final_metrics_sit_at_the_last(client: MlflowClient, tmp_path: Path):
    run_id, result = _tracked_student(StudentStore(tmp_path / "students"))
    run = client.get_run(run_id)
    losses = sorted(client.get_metric_history(run_id, "train_loss"), key=lambda m: m.step)
    assert [m.step for m in losses] == list(range(1, EPOCHS + 1))  # no point at step 0
    assert [m.value for m in losses] == pytest.approx([r["train_loss"] for r in result.history])
    for curve in ("train_accuracy", "val_accuracy", "val_loss", "lr", "optimizer_steps"):
        assert _steps(client, run_id, curve) == list(range(1, EPOCHS + 1)), curve
    for final in (
        "test_accuracy",
        "test_top5_accuracy",
        "test_loss",
        "train_images_per_second",
        "test_accuracy_class/class0",
    ):
        assert _steps(client, run_id, final) == [EPOCHS], final
    assert run.data.metrics["test_accuracy"] == pytest.approx(result.test.top1)
    assert run.data.tags.items() >= TAGS.items()
    assert run.data.tags["student_key"] == result.key
    assert run.data.tags["cache_hit"] == "false"
    assert run.data.params["training.lr"] == "0.05"
    assert run.data.params["student.width"] == "8"


def test_a_reused_student_replays_the_same_curves_in_one_write(
    client: MlflowClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    store = StudentStore(tmp_path / "students")
    _tracked_student(store)
    metric_writes = []
    log_batch = MlflowClient.log_batch

    def counted(self: MlflowClient, run_id: str, metrics=(), **kwargs):
        metric_writes.extend([len(metrics)] if metrics else [])
        return log_batch(self, run_id, metrics=metrics, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", counted)
    run_id, result = _tracked_student(store)
    assert result.cache_hit
    # Every point of every curve and the final and per-class metrics, in one transaction.
    points = sum(len(client.get_metric_history(run_id, name)) for name in client.get_run(run_id).data.metrics)
    assert metric_writes == [points]
    assert client.get_run(run_id).data.tags["cache_hit"] == "true"
    assert _steps(client, run_id, "train_loss") == list(range(1, EPOCHS + 1))
    assert _steps(client, run_id, "test_accuracy") == [EPOCHS]


def test_students_trained_at_once_log_to_their_own_runs_under_the_parent(client: MlflowClient, tmp_path: Path):
    store = StudentStore(tmp_path / "students")
    train, test = striped_images(16), striped_images(4, seed=2)
    params = {"student": STUDENT.model_dump(mode="json"), "training": FAST.model_dump(mode="json")}
    with mlflow.start_run(run_name="kedro run") as parent:
        runs = [MlflowStudentRun(f"seed {seed}", TAGS).start(params | {"seed": seed}) for seed in (0, 1)]

        def train_one(seed: int) -> str:
            with runs[seed] as run:
                result = train_student(store, STUDENT, FAST, train, test, seed, Normalization.of(train), tracker=run)
                run.log_result(result, test.class_names)
            return run.run.info.run_id

        run_ids = map_concurrently(train_one, [0, 1], workers=2, cost=float)
    for seed, run_id in enumerate(run_ids):
        run = client.get_run(run_id)
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED"
        assert run.data.params["seed"] == str(seed)
        assert run.info.run_name == f"seed {seed}"
        assert _steps(client, run_id, "train_loss") == list(range(1, EPOCHS + 1))
    assert mlflow.active_run() is None


def test_a_student_in_training_shows_each_epoch_as_it_ends(client: MlflowClient, monkeypatch: pytest.MonkeyPatch):
    clock = iter(range(0, 1000, 60))  # a minute between epochs
    monkeypatch.setattr(tracking.time, "monotonic", lambda: float(next(clock)))
    with MlflowStudentRun("real seed 0", TAGS).start({"seed": 0}) as run:
        for epoch in range(1, EPOCHS + 1):
            run.log_epoch({"epoch": epoch, "train_loss": 1.0 / epoch})
            assert _steps(client, run.run.info.run_id, "train_loss") == list(range(1, epoch + 1))
