"""A throw-away copy of the project (configuration and a small Fashion-MNIST stand-in) to run pipelines in."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from ..conftest import write_fashion_mnist

REPO = Path(__file__).resolve().parents[2]


def make_project(root: Path) -> Path:
    shutil.copytree(REPO / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    shutil.copy(REPO / "pyproject.toml", root)
    (root / "src").mkdir()  # the package itself is imported from the installed project
    write_fashion_mnist(root / "data" / "01_raw" / "fashion_mnist")
    return root


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
