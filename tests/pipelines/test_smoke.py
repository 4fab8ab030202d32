"""`kedro run --env smoke` of every registered pipeline, as a user runs them, and what lands in MLflow."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from kedro.framework.project import configure_project, pipelines

from .conftest import REPO, run_pipeline

configure_project("mind_the_gap")
PIPELINES = sorted(name for name in pipelines if name != "__default__")


def test_every_pipeline_is_registered():
    assert {"data_processing", "baselines"} <= set(PIPELINES)


def test_smoke_run_of_every_pipeline_tracks_every_student(project: Path):
    run_pipeline(project)  # the default: all pipelines in dependency order
    for name in PIPELINES:
        run_pipeline(project, name)

    summary = pd.read_csv(project / "data/08_reporting/baselines_summary.csv")
    assert summary.loc[0, "variant"] == "real" and summary.loc[0, "n"] == 2
    assert 0.0 <= summary.loc[0, "test_accuracy_mean"] <= 1.0
    counts = pd.read_csv(project / "data/08_reporting/real_data_summary.csv").set_index("class")
    assert (counts[["generator_pool", "train", "val"]].sum(axis=1) == 40).all()  # 40 per class in the stand-in

    with sqlite3.connect(project / "mlflow.db") as db:
        students = db.execute(
            """SELECT r.run_uuid, m.value FROM runs r
               JOIN tags p ON p.run_uuid = r.run_uuid AND p.key = 'pipeline' AND p.value = 'baselines'
               JOIN tags v ON v.run_uuid = r.run_uuid AND v.key = 'variant'
               JOIN tags n ON n.run_uuid = r.run_uuid AND n.key = 'mlflow.parentRunId'
               JOIN latest_metrics m ON m.run_uuid = r.run_uuid AND m.key = 'test_accuracy'"""
        ).fetchall()
        experiment = db.execute("SELECT name FROM experiments WHERE name = 'mind-the-gap'").fetchall()
        history = db.execute(
            "SELECT COUNT(*) FROM metrics WHERE key = 'train_loss' AND run_uuid = ?", (students[0][0],)
        ).fetchone()[0]
    assert experiment
    assert len(students) == 2 * 2  # two seeds, in the default run and in the baselines run
    assert all(0.0 <= accuracy <= 1.0 for _, accuracy in students)
    assert history == 2 + 1  # one point per epoch of the smoke recipe, plus the final value


def test_cli_rejects_a_misspelt_parameter_before_any_work(project: Path):
    result = subprocess.run(
        [str(Path(sys.executable).with_name("kedro")), "run", "--env", "smoke", "--params", "training.epochz=3"],
        cwd=project, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert "epochz" in result.stdout + result.stderr
    assert not (project / "data/02_intermediate/real_train.safetensors").exists()


@pytest.mark.parametrize(
    ("params", "culprit"),
    [
        ({"training": {"epochs": 0}}, "epochs"),
        ({"student": {"arch": "vgg"}}, "arch"),
        ({"dataset": {"split": {"val": 1.5}}}, "val"),
    ],
)
def test_bad_parameter_values_fail_naming_the_key(project: Path, params, culprit):
    with pytest.raises(Exception, match=culprit):
        run_pipeline(project, params=params)
    assert not (project / "data/02_intermediate/real_train.safetensors").exists()


def test_bad_input_data_fails_with_one_clear_line(project: Path):
    (project / "data/01_raw/fashion_mnist/train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(Exception, match="missing train-labels-idx1-ubyte"):
        run_pipeline(project, "data_processing")
    assert not any((project / "data/02_intermediate").glob("*"))


def test_repo_ships_smoke_and_paper_environments():
    assert (REPO / "conf/smoke/parameters.yml").is_file() and (REPO / "conf/paper/parameters.yml").is_file()
