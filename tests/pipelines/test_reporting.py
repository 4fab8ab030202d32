"""The reporting pipeline: one node that hands every experiment's outputs to the report, each of them optional, and
the run's times as a dataset of the catalog."""

from __future__ import annotations

import inspect
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest

from mind_the_gap.pipeline_registry import register_pipelines
from mind_the_gap.pipelines.reporting.nodes import build_report
from mind_the_gap.pipelines.reporting.pipeline import OPTIONAL_INPUTS, RUN_TIMES, create_pipeline
from mind_the_gap.results.sections import study_report

from .conftest import make_project, project_catalog


@pytest.fixture(scope="module")
def registered() -> dict:
    return {name: pipeline for name, pipeline in register_pipelines().items() if name != "__default__"}


def test_the_node_hands_every_input_to_the_report(tmp_path: Path):
    baselines = pd.DataFrame(
        {"cell": ["real", "synthetic"], "test_accuracy_mean": [0.9, 0.8], "test_accuracy_ci95": [0.01, 0.02], "n": 3}
    )
    inputs = dict.fromkeys(OPTIONAL_INPUTS) | {
        "baselines_summary": baselines,
        "layer_swap_interactive": go.Figure(go.Scatter(x=[0, 7], y=[0.8, 0.87])),
        RUN_TIMES: [{"pipeline": "baselines", "nodes": 2, "seconds": 3.0}],
    }
    page, markdown = build_report(reporting_dir=tmp_path, **inputs)
    assert "90.00 % ± 1.00 (n=3 seeds)" in page
    assert "| baselines  | 2       | 3.0       |" in markdown
    assert "## Baselines\n\nStudents trained on one source, tested on the real test set." in markdown
    assert "Not run: `kedro run --pipeline layer_swap`" in markdown  # a figure alone: the summary is missing


def test_the_report_node_reads_each_input_by_the_name_the_report_gives_it():
    (node,) = create_pipeline().nodes
    assert set(node.inputs) == {"reporting_dir", *OPTIONAL_INPUTS}
    assert node.outputs == ["report_html", "report_markdown"]
    parameters = set(inspect.signature(study_report).parameters)
    assert set(OPTIONAL_INPUTS) == parameters - {"figures_dir"}


def test_every_interactive_figure_a_pipeline_writes_is_in_the_report(registered: dict):
    written = {name for pipe in registered.values() for name in pipe.all_outputs()}
    interactive = {name for name in written if name.endswith("_interactive")}
    assert interactive == {
        "layer_swap_interactive",
        "data_efficiency_interactive",
        "normalization_interactive",
        "ablations_interactive",
        "ablations_per_class_interactive",
        "levers_interactive",
        "stitching_interactive",
    }
    assert interactive <= set(OPTIONAL_INPUTS)


@pytest.mark.parametrize("name", [name for name in OPTIONAL_INPUTS if name != RUN_TIMES])
def test_every_report_input_is_written_by_a_pipeline(registered: dict, name: str):
    writers = [p for p, pipe in registered.items() if name in pipe.all_outputs()]
    assert writers, name


def test_the_run_times_are_a_json_file_of_the_catalog_beside_the_report(registered: dict, tmp_path: Path):
    catalog = project_catalog(make_project(tmp_path / "project"))
    config = catalog.config_resolver.config[RUN_TIMES]  # written by mind_the_gap.hooks.RunTimesHook, not a node
    assert config["type"] == "json.JSONDataset"
    assert config["filepath"] == "data/08_reporting/run_times.json"
    assert not [p for p, pipe in registered.items() if RUN_TIMES in pipe.all_outputs()]
