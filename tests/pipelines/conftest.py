"""A throw-away copy of the project (configuration and a small Fashion-MNIST stand-in) to run pipelines in, and
tiny data with baseline students already trained, to test the experiments' nodes on."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import DataCatalog

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.experiments.baselines import BaselinesConfig
from mind_the_gap.experiments.study import Study, build_study
from mind_the_gap.models.architectures import StudentConfig
from mind_the_gap.pipelines.baselines.nodes import train_baselines
from mind_the_gap.pipelines.data_processing.nodes import measure_real_statistics
from mind_the_gap.runners.estimate import environment_config
from mind_the_gap.training.config import TrainConfig

from ..conftest import striped_images, write_fashion_mnist

REPO = Path(__file__).resolve().parents[2]
STUDENT = StudentConfig(width=8)
TRAINING = TrainConfig(epochs=2, batch_size=32, warmup_epochs=0, progress=False)
BASELINE_SEEDS = [0, 1]


def make_project(root: Path) -> Path:
    shutil.copytree(REPO / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    # The project's own database by absolute path: MLflow keeps one store per tracking URI in a process, so with the
    # shipped relative URI a second throw-away project in the same test process would log into the first one's.
    mlflow_yml = root / "conf" / "base" / "mlflow.yml"
    mlflow_yml.write_text(mlflow_yml.read_text().replace("sqlite:///mlflow.db", f"sqlite:///{root}/mlflow.db"))
    shutil.copy(REPO / "pyproject.toml", root)
    (root / "src").mkdir()  # the package itself is imported from the installed project
    write_fashion_mnist(root / "data" / "01_raw" / "fashion_mnist")
    return root


def project_catalog(project: Path, env: str = "local") -> DataCatalog:
    """The catalog of ``project`` through the project's own config loader; its paths are relative to the cwd."""
    return DataCatalog.from_config(environment_config(project / "conf", env)["catalog"])


def run_pipeline(project: Path, pipeline: str | None = None, env: str = "smoke", params: dict | None = None):
    bootstrap_project(project)
    try:
        with KedroSession.create(project_path=project, env=env, runtime_params=params or {}) as session:
            return session.run(pipeline_names=[pipeline] if pipeline else None)
    finally:
        # kedro-mlflow finishes its run but leaves it on this thread's stack of active runs; in one process
        # the next session would log into it instead of starting its own, as a fresh `kedro run` does.
        while mlflow.active_run() is not None:
            mlflow.end_run()


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    root = make_project(tmp_path / "project")
    monkeypatch.chdir(root)  # catalog paths and the MLflow database are relative to the project root
    return root


@contextmanager
def tracking_to(uri: str) -> Iterator[str]:
    """MLflow runs go to ``uri``'s Default experiment inside the block (whatever a `kedro run` before selected)."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("Default")
    try:
        yield uri
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow database for the node tests: creating its tables takes seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def tracking(tracking_uri: str) -> Iterator[str]:
    with tracking_to(tracking_uri) as uri:
        yield uri


@dataclass(frozen=True)
class TinyExperiment:
    """16 px striped images of 4 classes, and a baseline student per seed trained on each source, in ``store``."""

    real_train: ImageSet
    val: ImageSet
    test: ImageSet
    synthetic_train: ImageSet
    real_statistics: dict[str, list[float]]
    store: Path
    real_runs: pd.DataFrame
    synthetic_runs: pd.DataFrame

    @property
    def study(self) -> Study:
        """What every student-training node shares."""
        return build_study(self.val, self.test, self.store, self.real_statistics, STUDENT, TRAINING)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory, tracking_uri: str) -> TinyExperiment:
    real_train, synthetic_train = striped_images(24), striped_images(24, seed=3)
    val, test = striped_images(6, seed=1), striped_images(8, seed=2)
    statistics = measure_real_statistics(real_train)
    store = tmp_path_factory.mktemp("students")
    config = BaselinesConfig(seeds=BASELINE_SEEDS)
    study = build_study(val, test, store, statistics, STUDENT, TRAINING)
    with tracking_to(tracking_uri):
        runs = {
            cell: train_baselines(cell, data, study, config)
            for cell, data in (("real", real_train), ("synthetic", synthetic_train))
        }
    return TinyExperiment(real_train, val, test, synthetic_train, statistics, store, runs["real"], runs["synthetic"])
