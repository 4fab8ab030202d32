"""The project's catalog: every dataset a pipeline uses has an entry, and the factory patterns split names right."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest
from kedro.io import DataCatalog
from kedro_datasets.plotly import JSONDataset

from mind_the_gap import settings
from mind_the_gap.experiments.study import parent_keys
from mind_the_gap.pipeline_registry import register_pipelines
from mind_the_gap.runners.grid import PER_CELL

from .pipelines.conftest import make_project, project_catalog

PIPELINES = {name: pipeline for name, pipeline in register_pipelines().items() if name != "__default__"}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> DataCatalog:
    return project_catalog(make_project(tmp_path_factory.mktemp("catalog") / "project"))


def datasets(pipeline_name: str) -> set[str]:
    return {name for name in PIPELINES[pipeline_name].datasets() if not name.startswith("params:")} - {"parameters"}


def location(catalog: DataCatalog, name: str) -> str | None:
    """Where a dataset lives on disk: its file, its folder, or its wrapped dataset's file (MLflow artifacts)."""
    config = catalog.config_resolver.resolve_pattern(name)
    config = config.get("dataset", config)
    return config.get("filepath", config.get("path"))


@pytest.mark.parametrize(
    ("name", "path"),
    [
        # The old pattern {experiment}_{variant}_runs split layer_swap_prefix_runs as experiment "layer".
        ("layer_swap.prefix_from_real.runs", "data/07_model_output/layer_swap/prefix_from_real_runs.csv"),
        ("layer_swap.suffix_from_synthetic.runs", "data/07_model_output/layer_swap/suffix_from_synthetic_runs.csv"),
        ("data_efficiency.scratch.runs", "data/07_model_output/data_efficiency/scratch_runs.csv"),
        ("baselines_real_runs", "data/07_model_output/baselines/real_runs.csv"),
        ("baselines_synthetic_runs", "data/07_model_output/baselines/synthetic_runs.csv"),
        ("layer_swap_summary", "data/08_reporting/layer_swap_summary.csv"),
        ("data_efficiency_figure", "data/08_reporting/data_efficiency.png"),
        ("real_statistics", "data/02_intermediate/real_statistics.json"),
        ("synthetic_recognisability", "data/08_reporting/synthetic_recognisability.csv"),
    ],
)
def test_names_resolve_to_their_files(catalog: DataCatalog, name: str, path: str):
    assert name in catalog
    assert location(catalog, name) == path


def test_summary_metrics_go_to_mlflow_under_their_experiments_name(catalog: DataCatalog):
    assert catalog.config_resolver.resolve_pattern("layer_swap_metrics")["prefix"] == "layer_swap"
    assert catalog.config_resolver.resolve_pattern("synthetic_recognisability_metrics")["prefix"] == (
        "synthetic_recognisability"
    )


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_every_dataset_a_pipeline_uses_has_a_catalog_entry(catalog: DataCatalog, pipeline: str):
    unlisted = sorted(name for name in datasets(pipeline) if name not in catalog)  # else a MemoryDataset, lost
    assert not unlisted
    # Only what a builder makes in every run that needs it (the study) is kept in memory, and never copied.
    built = {name for node in PIPELINES[pipeline].nodes if PER_CELL in node.tags for name in node.outputs}
    in_memory = {name for name in datasets(pipeline) if catalog.get_type(name).endswith("MemoryDataset")}
    assert in_memory == built
    assert all(catalog.get(name)._copy_mode == "assign" for name in in_memory)


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_every_runs_table_lies_in_its_pipelines_folder(catalog: DataCatalog, pipeline: str):
    tables = [name for name in PIPELINES[pipeline].all_outputs() if name.endswith("runs")]
    for name in tables:
        assert Path(location(catalog, name)).parent == Path("data/07_model_output") / pipeline, name


def test_no_two_datasets_share_a_file(catalog: DataCatalog):
    names = set().union(*(datasets(pipeline) for pipeline in PIPELINES))
    places = Counter(location(catalog, name) for name in names)
    assert [place for place, count in places.items() if place is not None and count > 1] == []


def test_a_runs_table_keeps_its_student_keys_as_written(catalog: DataCatalog, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    key = "01234567890123456789"  # a hex digest without letters: one in about 12,000 keys
    catalog.save("baselines_real_runs", pd.DataFrame({"seed": [0], "student_key": [key]}))
    assert parent_keys(catalog.load("baselines_real_runs"), [0], "real", "layer_swap") == {0: key}


@pytest.mark.parametrize("experiment", ["layer_swap", "data_efficiency", "normalization", "ablations"])
def test_interactive_figures_are_versioned_plotly_datasets_in_kedro_vizs_reporting_layer(
    catalog: DataCatalog, experiment: str
):
    name = f"{experiment}_interactive"
    config = catalog.config_resolver.resolve_pattern(name)
    assert isinstance(catalog.get(name), JSONDataset)
    assert config["versioned"] is True
    assert location(catalog, name) == f"data/08_reporting/{experiment}.json"
    assert config["metadata"] == {"kedro-viz": {"layer": "reporting"}}


def test_an_interactive_figure_is_saved_as_a_version_and_read_back(
    catalog: DataCatalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    assert not catalog.exists("layer_swap_interactive")  # no version yet
    catalog.save("layer_swap_interactive", go.Figure(go.Scatter(x=[0, 5, 10], y=[0.8, 0.85, 0.9])))
    (saved,) = Path("data/08_reporting/layer_swap.json").glob("*/layer_swap.json")  # <version>/<file>
    assert saved.parent.name != "layer_swap.json"
    assert catalog.load("layer_swap_interactive").data[0].y == (0.8, 0.85, 0.9)


@pytest.mark.parametrize(
    ("env", "root", "experiment"),
    [
        ("local", "data", "mind-the-gap"),
        ("smoke", "data/smoke", "mind-the-gap-smoke"),
        ("paper", "data/paper", "mind-the-gap-paper"),
    ],
)
def test_each_environment_writes_under_its_own_root_and_experiment(
    tmp_path: Path, env: str, root: str, experiment: str
):
    project = make_project(tmp_path / "project")
    catalog = project_catalog(project, env)
    names = set().union(*(datasets(pipeline) for pipeline in PIPELINES))
    places = [location(catalog, name) for name in names]
    assert [place for place in places if place is not None and not place.startswith(f"{root}/0")] == []
    loader = settings.CONFIG_LOADER_CLASS(conf_source=str(project / "conf"), env=env, **settings.CONFIG_LOADER_ARGS)
    assert loader["mlflow"]["tracking"]["experiment"]["name"] == experiment
    assert loader["mlflow"]["tracking"]["run"]["nested"] is True  # the rest of base's MLflow settings kept
