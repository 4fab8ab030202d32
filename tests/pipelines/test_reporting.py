"""The report: the headline beside the paper's figures, every section with its numbers, and a pipeline that has
not run named as such."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest

from mind_the_gap.interactive import plotly_js
from mind_the_gap.pipeline_registry import register_pipelines
from mind_the_gap.pipelines.reporting.nodes import build_report
from mind_the_gap.pipelines.reporting.pipeline import OPTIONAL_INPUTS
from mind_the_gap.report import headline, percent, with_intervals

FIGURE = go.Figure(go.Scatter(x=[0, 7, 10], y=[0.8, 0.87, 0.89], name="units 0..k-1 kept"))


def test_an_empty_study_reports_every_pipeline_as_not_run(tmp_path: Path):
    page, markdown = build_report(*[None] * len(OPTIONAL_INPUTS), tmp_path)
    for pipeline in ("data_processing", "baselines", "layer_swap", "data_efficiency", "normalization", "ablations"):
        assert f"kedro run --pipeline {pipeline}" in page and f"kedro run --pipeline {pipeline}" in markdown
    assert "No experiment pipeline ran in this" in markdown
    assert "87.80 %" in page and "64.80 %" in markdown  # the paper's column stands alone


def test_the_headline_reads_the_baselines_the_layer_swap_and_the_data_efficiency():
    baselines = pd.DataFrame(
        {
            "cell": ["real", "synthetic"],
            "test_accuracy_mean": [0.9, 0.8],
            "test_accuracy_ci95": [0.01, 0.02],
            "n": [3, 3],
        }
    )
    layer_swap = pd.DataFrame(
        {
            "arrangement": ["prefix", "prefix", "suffix"],
            "from": ["synthetic"] * 3,
            "cut": [3, 7, 7],
            "trained": ["3-9", "7-9", "0-6"],
            "test_accuracy_mean": [0.89, 0.87, 0.5],
            "gap_recovered": [0.9, 0.7, 0.0],
        }
    )
    efficiency = pd.DataFrame(
        {"strategy": ["last 2", "last 2"], "fraction_label": ["1/2", "1/8"], "below_real_pp": [1.0, 4.5]}
    )
    table = headline(baselines, layer_swap, efficiency).set_index("figure")["this run"]
    assert table.iloc[0] == "90.00 % ± 1.00 (n=3 seeds)" and table.iloc[1] == "80.00 % ± 2.00 (n=3 seeds)"
    assert table.iloc[2] == "10"
    assert table.iloc[3] == "+7.0 (units 7-9: 70 % of the gap)"  # the largest cut: the fewest units from real
    assert table.iloc[4] == "4.5 below real-only"
    assert headline(None, None, None)["this run"].tolist()[2:] == ["–", "–", "–"]


def test_intervals_join_means_and_their_ci():
    table = pd.DataFrame(
        {
            "cell": ["a"],
            "test_accuracy_mean": [0.8932],
            "test_accuracy_ci95": [0.0037],
            "gap_pp_mean": [9.63],
            "gap_pp_ci95": [float("nan")],
            "n": [3],
        }
    )
    out = with_intervals(table, ["cell", "test_accuracy", "gap_pp", "n", "absent"])
    assert out.iloc[0].tolist() == ["a", "89.32 % ± 0.37", "9.63", 3]
    assert percent(float("nan")) == "–"
    paired = pd.DataFrame({"change_pp": [0.513], "change_pp_ci95": [0.65]})  # a plain column with its CI
    assert with_intervals(paired, ["change_pp"]).iloc[0].tolist() == ["0.513 ± 0.65"]


def test_the_html_report_is_self_contained(tmp_path: Path):
    for name in ("layer_swap", "data_efficiency"):
        (tmp_path / f"{name}.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    layer_swap = pd.DataFrame(
        {
            "arrangement": ["prefix"],
            "from": ["synthetic"],
            "cut": [7],
            "kept": ["0-6"],
            "trained": ["7-9"],
            "real_units": ["7-9"],
            "n": [3],
            "test_accuracy_mean": [0.87],
            "test_accuracy_ci95": [0.005],
            "gap_recovered": [0.76],
        }
    )
    efficiency = pd.DataFrame(
        {
            "strategy": ["last 2"],
            "fraction_label": ["1/8"],
            "real_images": [1000],
            "n": [3],
            "test_accuracy_mean": [0.83],
            "test_accuracy_ci95": [0.01],
            "below_real_pp": [6.8],
        }
    )
    times = [
        {"pipeline": "layer_swap", "nodes": 5, "seconds": 1180.04},
        {"pipeline": "reporting", "nodes": 1, "seconds": 0.5},
    ]
    inputs = dict.fromkeys(OPTIONAL_INPUTS) | {
        "layer_swap_summary": layer_swap,
        "layer_swap_interactive": FIGURE,
        "data_efficiency_summary": efficiency,
        "run_times": times,
    }
    page, markdown = build_report(*inputs.values(), tmp_path)
    assert "87.00 % ± 0.50" in page and "![Test accuracy against cut](layer_swap.png)" in markdown
    assert "![Test accuracy against real images used](data_efficiency.png)" in markdown
    assert "kedro run --pipeline layer_swap" not in page
    assert "| layer_swap | 5 | 1180.0 |" in markdown and "| reporting |" not in markdown  # the run's wall times
    # The layer swap's figure drawn by plotly.js, inlined once; the data efficiency's, without one, as its PNG.
    assert page.count(plotly_js()) == 1 and "Plotly.newPlot" in page
    assert page.count('class="plotly-graph-div"') == 1 and 'id="figure-layer_swap"' in page
    assert page.count("<img ") == 1 and "data:image/png;base64," in page
    assert not re.search(r"<script[^>]*\ssrc=", page)  # nothing fetched when it opens


def test_a_report_without_interactive_figures_carries_no_plotly_js(tmp_path: Path):
    page, _ = build_report(*[None] * len(OPTIONAL_INPUTS), tmp_path)
    assert "<script" not in page


def test_every_interactive_figure_a_pipeline_writes_is_in_the_report():
    written = {name for pipe in register_pipelines().values() for name in pipe.all_outputs()}
    interactive = {name for name in written if name.endswith("_interactive")}
    assert interactive == {
        "layer_swap_interactive",
        "data_efficiency_interactive",
        "normalization_interactive",
        "ablations_interactive",
    }
    assert interactive <= set(OPTIONAL_INPUTS)


@pytest.mark.parametrize("name", [name for name in OPTIONAL_INPUTS if name != "run_times"])
def test_every_report_input_is_written_by_a_pipeline(name: str):
    writers = [p for p, pipe in register_pipelines().items() if p != "__default__" and name in pipe.all_outputs()]
    assert writers, name
