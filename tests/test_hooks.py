"""The project's hooks. MissingInputsHook: a run whose inputs other pipelines write fails before any node, saying
which to run first; the report's inputs alone are optional. RunTimesHook: the run's wall times, written to the
catalog's ``run_times`` file for the report to read."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import plotly.graph_objects as go
import pytest
from kedro.framework.project import configure_project, pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import DataCatalog
from kedro_datasets.json import JSONDataset

from mind_the_gap.hooks import (
    MissingInputsError,
    MissingInputsHook,
    RunTimesHook,
    missing_inputs_message,
    optional_missing,
)
from mind_the_gap.pipelines.reporting.pipeline import OPTIONAL_INPUTS, RUN_TIMES
from mind_the_gap.runners.dask import EARLIER_SECONDS_ENV

from .conftest import striped_images
from .pipelines.conftest import make_project, project_catalog, tracking_to

configure_project("mind_the_gap")  # the hooks read the registered pipelines from Kedro, as in a `kedro run`
PIPELINES = dict(pipelines)


@pytest.fixture
def catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DataCatalog:
    """The project's catalog in a fresh copy of the project: raw data only."""
    monkeypatch.chdir(make_project(tmp_path / "project"))
    return project_catalog(Path.cwd())


def message(pipeline: str, catalog: DataCatalog) -> str | None:
    return missing_inputs_message(PIPELINES[pipeline], catalog, PIPELINES)


def save_real_data(catalog: DataCatalog) -> None:
    """What data_processing writes."""
    for split in ("generator_pool", "train", "val", "test"):
        catalog.save(f"real_{split}", striped_images(4))
    catalog.save("real_statistics", {"mean": [0.5], "std": [0.2]})


def test_layer_swap_on_a_fresh_project_names_what_is_missing_and_what_to_run_first(catalog: DataCatalog):
    text = message("layer_swap", catalog)
    assert "baselines_real_runs (written by baselines)" in text
    assert "baselines_synthetic_runs (written by baselines)" in text
    assert "synthetic_train (written by generation)" in text
    assert "real_train (written by data_processing)" in text
    assert "student_store" not in text
    assert "params:" not in text
    assert text.endswith(
        "run `kedro run --pipelines data_processing,generator_training,generation,baselines` first, or `kedro run`"
    )
    assert "\n" not in text


@pytest.mark.parametrize(
    ("pipeline", "first"),
    [
        ("generator_training", "data_processing"),
        ("generation", "data_processing,generator_training"),
        ("baselines", "data_processing,generator_training,generation"),
        ("data_efficiency", "data_processing,generator_training,generation,baselines"),
    ],
)
def test_pipelines_to_run_first_come_in_dependency_order(catalog: DataCatalog, pipeline: str, first: str):
    assert f"`kedro run --pipelines {first}` first" in message(pipeline, catalog)


def test_only_the_pipelines_that_write_what_is_missing_are_suggested(catalog: DataCatalog):
    save_real_data(catalog)
    text = message("baselines", catalog)
    assert text.startswith("missing input(s) synthetic_train (written by generation)")
    assert "`kedro run --pipelines generator_training,generation` first" in text


def test_nothing_to_say_when_every_input_is_on_disk(catalog: DataCatalog):
    assert message("data_processing", catalog) is None  # raw data are read through parameters
    save_real_data(catalog)
    assert message("generator_training", catalog) is None
    catalog.save("synthetic_train", striped_images(4))
    for cell in ("real", "synthetic"):
        catalog.save(f"baselines_{cell}_runs", pd.DataFrame({"seed": [0], "student_key": ["0123abcd"]}))
    assert message("layer_swap", catalog) is None
    assert message("data_efficiency", catalog) is None


def test_the_hook_fails_the_run_before_any_node_and_closes_its_mlflow_run(catalog: DataCatalog, tmp_path: Path):
    with tracking_to(f"sqlite:///{tmp_path / 'mlflow.db'}"):
        run = mlflow.start_run(run_name="layer_swap")  # as kedro-mlflow opens it before the hook runs
        try:
            with pytest.raises(MissingInputsError, match=r"^missing input\(s\) .*baselines_real_runs"):
                MissingInputsHook().before_pipeline_run({}, PIPELINES["layer_swap"], catalog)
            assert mlflow.active_run() is None
        finally:
            while mlflow.active_run() is not None:
                mlflow.end_run()
        assert mlflow.get_run(run.info.run_id).info.status == "FAILED"


def test_the_reports_inputs_are_optional_and_an_unsaved_version_counts_as_missing(catalog: DataCatalog):
    report = PIPELINES["reporting"]
    assert optional_missing(report, catalog) == set(OPTIONAL_INPUTS)  # a fresh project: nothing ran
    MissingInputsHook().before_pipeline_run({}, report, catalog)  # no error: each arrives as None
    assert catalog.load("layer_swap_interactive") is None
    assert catalog.load("layer_swap_summary") is None
    assert catalog.load(RUN_TIMES) is None  # no RunTimesHook in this run: the report says no times

    saved = project_catalog(Path.cwd())  # a later run's catalog, after the layer swap wrote its figure's first version
    saved.save("layer_swap_interactive", go.Figure(go.Scatter(x=[0, 10], y=[0.8, 0.9])))
    assert "layer_swap_interactive" not in optional_missing(report, project_catalog(Path.cwd()))


def run_times_hook(path: Path) -> RunTimesHook:
    """The hook as a `kedro run` sets it up: the catalog's configuration names the file."""
    hook = RunTimesHook()
    hook.after_catalog_created({RUN_TIMES: {"type": "json.JSONDataset", "filepath": str(path)}})
    return hook


def test_the_run_times_are_written_as_the_run_starts_and_after_each_node(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(EARLIER_SECONDS_ENV, json.dumps({"baselines.real.train_students": 30.0}))  # a Dask cell's
    path = tmp_path / "08_reporting" / "run_times.json"
    hook = run_times_hook(path)
    report = PIPELINES["reporting"]
    hook.before_pipeline_run({}, report, DataCatalog())
    written = JSONDataset(filepath=str(path))
    assert written.load() == [{"pipeline": "baselines", "nodes": 1, "seconds": 30.0}]  # before the report reads it
    (node,) = report.nodes
    hook.before_node_run(node)
    hook.after_node_run(node)
    assert [row["pipeline"] for row in written.load()] == ["baselines", "reporting"]
    assert written.load()[1]["nodes"] == 1
    assert [file.name for file in path.parent.iterdir()] == ["run_times.json"]  # no temporary file left behind


def test_a_run_without_the_report_writes_no_times(tmp_path: Path):
    path = tmp_path / "run_times.json"
    hook = run_times_hook(path)
    hook.before_pipeline_run({}, PIPELINES["data_processing"], DataCatalog())
    for node in PIPELINES["data_processing"].nodes:
        hook.before_node_run(node)
        hook.after_node_run(node)
    assert not path.exists()
    assert [row["pipeline"] for row in hook.table()] == ["data_processing"]


def test_a_catalog_without_the_run_times_gets_none_written(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hook = RunTimesHook()
    hook.after_catalog_created({})
    hook.before_pipeline_run({}, PIPELINES["reporting"], DataCatalog())
    assert list(tmp_path.iterdir()) == []


def kedro_run(project: Path, *pipeline_names: str) -> None:
    """`kedro run --env smoke --pipelines <names>` in ``project``: several pipelines in one run."""
    bootstrap_project(project)
    try:
        with KedroSession.create(project_path=project, env="smoke") as session:
            session.run(pipeline_names=list(pipeline_names))
    finally:
        while mlflow.active_run() is not None:  # kedro-mlflow leaves its finished run on this thread's stack
            mlflow.end_run()


@pytest.mark.slow
def test_a_runs_report_reads_the_times_of_the_pipelines_that_ran_before_it(tmp_path: Path, monkeypatch):
    project = make_project(tmp_path / "project")
    monkeypatch.chdir(project)
    reporting = project / "data/smoke/08_reporting"
    kedro_run(project, "data_processing", "reporting")
    times = JSONDataset(filepath=str(reporting / "run_times.json")).load()
    assert [row["pipeline"] for row in times] == ["data_processing", "reporting"]  # the whole run, once it ended
    # In the report, the times written before it ran (RunTimesHook runs before MissingInputsHook would set them None).
    times_section = (reporting / "report.md").read_text().split("## Wall time of this run")[1]
    assert f"| data_processing | {times[0]['nodes']}" in times_section
    assert "| reporting" not in times_section
    # Alone, the report reads no times: the data_processing run before it is not this run.
    kedro_run(project, "reporting")
    assert "No experiment pipeline ran in this `kedro run`" in (reporting / "report.md").read_text()
