"""MissingInputsHook: a run whose inputs other pipelines write fails before any node, saying which to run first."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import plotly.graph_objects as go
import pytest
from kedro.io import DataCatalog

from mind_the_gap.hooks import MissingInputsError, MissingInputsHook, missing_inputs_message, optional_missing
from mind_the_gap.pipeline_registry import register_pipelines
from mind_the_gap.pipelines.reporting.pipeline import OPTIONAL_INPUTS

from .conftest import striped_images
from .pipelines.conftest import make_project, project_catalog, tracking_to

PIPELINES = register_pipelines()


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
    assert "student_store" not in text and "params:" not in text  # folders always exist; parameters are no data
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
    assert message("layer_swap", catalog) is None and message("data_efficiency", catalog) is None


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
    assert catalog.load("layer_swap_interactive") is None and catalog.load("layer_swap_summary") is None

    saved = project_catalog(Path.cwd())  # a later run's catalog, after the layer swap wrote its figure's first version
    saved.save("layer_swap_interactive", go.Figure(go.Scatter(x=[0, 10], y=[0.8, 0.9])))
    assert "layer_swap_interactive" not in optional_missing(report, project_catalog(Path.cwd()))
