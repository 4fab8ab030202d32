"""`kedro run --env smoke` of every registered pipeline, as a user runs them, and what lands in MLflow."""

from __future__ import annotations

import json
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
    assert {"data_processing", "baselines", "generator_training", "generation"} <= set(PIPELINES)


def _parent_metric(db: sqlite3.Connection, run_name: str, key: str) -> list[float]:
    """The metric ``key`` of every top-level (`kedro run`) run named ``run_name``, oldest first."""
    rows = db.execute(
        """SELECT m.value FROM runs r
           JOIN tags n ON n.run_uuid = r.run_uuid AND n.key = 'mlflow.runName' AND n.value = ?
           JOIN latest_metrics m ON m.run_uuid = r.run_uuid AND m.key = ?
           WHERE r.run_uuid NOT IN (SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId')
           ORDER BY r.start_time""",
        (run_name, key),
    )
    return [value for (value,) in rows]


def test_smoke_run_of_every_pipeline_tracks_every_student(project: Path):
    run_pipeline(project)  # the default: all pipelines in dependency order
    for name in PIPELINES:
        run_pipeline(project, name)

    summary = pd.read_csv(project / "data/08_reporting/baselines_summary.csv").set_index("variant")
    assert list(summary.index) == ["real", "synthetic"] and (summary["n"] == 2).all()
    assert summary["test_accuracy_mean"].between(0, 1).all()
    assert summary.loc["synthetic", "gap_pp"] == pytest.approx(
        100 * (summary.loc["real", "test_accuracy_mean"] - summary.loc["synthetic", "test_accuracy_mean"])
    )
    counts = pd.read_csv(project / "data/08_reporting/real_data_summary.csv").set_index("class")
    assert (counts[["generator_pool", "train", "val"]].sum(axis=1) == 40).all()  # 40 per class in the stand-in
    manifest = pd.read_csv(project / "data/03_primary/synthetic_manifest.csv")
    assert len(manifest) == 10 * 24 and manifest.groupby("class_index").size().eq(24).all()
    assert all((project / "data/03_primary/synthetic" / file).is_file() for file in manifest["file"])
    assert pd.read_csv(project / "data/08_reporting/generator_recognisability.csv").shape == (10, 2)
    assert (project / "data/08_reporting/generator_samples.png").stat().st_size > 0

    with sqlite3.connect(project / "mlflow.db") as db:
        students = db.execute(
            """SELECT v.value, m.value FROM runs r
               JOIN tags p ON p.run_uuid = r.run_uuid AND p.key = 'pipeline' AND p.value = 'baselines'
               JOIN tags v ON v.run_uuid = r.run_uuid AND v.key = 'variant'
               JOIN tags n ON n.run_uuid = r.run_uuid AND n.key = 'mlflow.parentRunId'
               JOIN latest_metrics m ON m.run_uuid = r.run_uuid AND m.key = 'test_accuracy'"""
        ).fetchall()
        experiment = db.execute("SELECT name FROM experiments WHERE name = 'mind-the-gap'").fetchall()
        epochs = db.execute(
            """SELECT COUNT(*) FROM metrics m JOIN tags n ON n.run_uuid = m.run_uuid AND n.key = 'mlflow.runName'
               WHERE m.key = 'train_loss' AND n.value = 'baselines/real/seed0' GROUP BY m.run_uuid"""
        ).fetchall()
        generated = _parent_metric(db, "__default__", "generation.images")
        regenerated = _parent_metric(db, "generation", "generation.images")
        reused = _parent_metric(db, "generation", "generation.images_reused")
        recognisability = _parent_metric(db, "__default__", "generator_training.recognisability")
    assert experiment
    # Two seeds per variant, in the default run and again in the baselines run; real-only in both.
    assert sorted(variant for variant, _ in students) == ["real"] * 4 + ["synthetic"] * 4
    assert all(0.0 <= accuracy <= 1.0 for _, accuracy in students)
    assert {count for (count,) in epochs} == {2 + 1}  # a point per epoch of the smoke recipe, plus the final one
    assert generated == [240] and regenerated == [0] and reused == [240]  # a re-run finds every image in place
    assert len(recognisability) == 1 and 0.0 <= recognisability[0] <= 1.0

    # The results notebook runs on what the pipelines wrote, from the catalog and the MLflow database.
    notebook = json.loads((REPO / "notebooks/results.ipynb").read_text())
    code = "\n".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
    namespace: dict = {}
    exec(compile(code, "results.ipynb", "exec"), namespace)
    assert set(namespace["students"]["tags.variant"]) == {"real", "synthetic"}
    assert namespace["baselines"]["variant"].tolist() == ["real", "synthetic"]


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
        ({"generation": {"shard": "3/2"}}, "shard"),
        ({"generator_training": {"diffusion": {"stepz": 3}}}, "stepz"),
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
