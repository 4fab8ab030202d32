"""The report: the headline beside the paper's figures, every section with its numbers, a pipeline that has not run
named as such, rendered from its templates as one self-contained page and a Markdown twin."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from mind_the_gap.results.interactive import plotly_js
from mind_the_gap.results.report import Figure, Report, Section, percent, render_html, render_markdown, with_intervals
from mind_the_gap.results.sections import headline, study_report

FIGURE = go.Figure(go.Scatter(x=[0, 7, 10], y=[0.8, 0.87, 0.89], name="units 0..k-1 kept"))
EXPERIMENTS = ("data_processing", "baselines", "layer_swap", "data_efficiency", "normalization", "ablations")
LAYER_SWAP = pd.DataFrame(
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
DATA_EFFICIENCY = pd.DataFrame(
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
RUN_TIMES = [
    {"pipeline": "layer_swap", "nodes": 5, "seconds": 1180.04},
    {"pipeline": "reporting", "nodes": 1, "seconds": 0.5},
]


def section(markdown: str, title: str) -> str:
    """The Markdown of one section: from its heading to the next."""
    return markdown.split(f"## {title}\n")[1].split("\n## ")[0]


def test_an_empty_study_reports_every_pipeline_as_not_run(tmp_path: Path):
    report = study_report(tmp_path)
    page, markdown = render_html(report), render_markdown(report)
    for pipeline in EXPERIMENTS:
        assert f"Not run: <code>kedro run --pipeline {pipeline}</code> writes this section." in page
        assert f"Not run: `kedro run --pipeline {pipeline}` writes this section." in markdown
    assert "No experiment pipeline ran in this `kedro run`" in section(markdown, "Wall time of this run")
    # The paper's column stands alone.
    assert "87.80 %" in page
    assert "64.80 %" in markdown


def test_the_headline_reads_the_baselines_the_layer_swap_and_the_data_efficiency():
    baselines = pd.DataFrame(
        {
            "cell": ["real", "synthetic"],
            "test_accuracy_mean": [0.9, 0.8],
            "test_accuracy_ci95": [0.01, 0.02],
            "n": [3, 3],
            "gap_pp": [0.0, 10.0],
            "gap_pp_ci95": [float("nan"), 1.5],
        }
    )
    # The headline is the row the summary marks (layer_swap.headline_cut), not the largest cut.
    layer_swap = pd.DataFrame(
        {
            "arrangement": ["prefix", "prefix", "prefix", "suffix"],
            "from": ["synthetic"] * 4,
            "cut": [3, 8, 9, 7],
            "trained": ["3-9", "8-9", "9-9", "0-6"],
            "test_accuracy_mean": [0.89, 0.87, 0.84, 0.5],
            "vs_parent_pp": [9.0, 7.0, 4.0, -30.0],
            "vs_parent_pp_ci95": [1.0, 0.5, 0.4, 2.0],
            "gap_recovered": [0.9, 0.7, 0.4, 0.0],
            "gap_recovered_low": [0.8, 0.62, 0.3, -0.1],
            "gap_recovered_high": [1.0, 0.79, 0.5, 0.1],
            "gap_recovered_method": ["fieller"] * 4,
            "gap_recovered_control": [0.95, 0.75, 0.45, float("nan")],
            "gap_recovered_control_low": [0.85, 0.5, 0.3, float("nan")],
            "gap_recovered_control_high": [1.05, 1.4, 0.6, float("nan")],
            "gap_recovered_control_method": ["fieller", "delta (Fieller unbounded)", "fieller", "fieller"],
            "headline": [False, True, False, False],
        }
    )
    efficiency = pd.DataFrame(
        {
            "strategy": ["last 2", "last 2"],
            "fraction_label": ["1/2", "1/8"],
            "below_real_pp": [1.0, 4.5],
            "below_real_pp_ci95": [0.5, 1.25],
        }
    )
    table = headline(baselines, layer_swap, efficiency).set_index("figure")["this run"]
    assert table.tolist() == [
        "90.00 % ± 1.00 (n=3 seeds)",
        "80.00 % ± 2.00 (n=3 seeds)",
        "10 ± 1.5",
        "+7 ± 0.5 (units 8-9, layer_swap.headline_cut 8: 70 % (62 to 79) of the gap; "
        "75 % (50 to 140, delta) against the same-source controls)",
        "4.5 ± 1.25 below real-only",
    ]
    assert headline(None, None, None)["this run"].tolist() == ["–"] * 5
    unmarked = layer_swap.assign(headline=False)  # its headline cut not run
    assert headline(baselines, unmarked, efficiency)["this run"][3] == "–"


def test_shares_carry_their_interval_and_say_where_the_delta_method_stands_in():
    table = pd.DataFrame(
        {
            "gap_recovered": [0.5625, 1.0, float("nan")],
            "gap_recovered_low": [0.1756, float("nan"), float("nan")],
            "gap_recovered_high": [0.7967, float("nan"), float("nan")],
            "gap_recovered_method": ["fieller", "fieller", "fieller"],
        }
    )
    assert with_intervals(table, ["gap_recovered"])["gap_recovered"].tolist() == ["56 % (18 to 80)", "100 %", "–"]
    delta = table.assign(gap_recovered_method="delta (Fieller unbounded)").head(1)
    assert with_intervals(delta, ["gap_recovered"])["gap_recovered"].tolist() == ["56 % (18 to 80, delta)"]


def test_a_table_of_a_family_of_comparisons_says_its_p_values_are_holm_corrected(tmp_path: Path):
    swap = LAYER_SWAP.assign(
        vs_parent_pp=[7.0], vs_parent_pp_ci95=[0.5], vs_parent_pp_p=[0.01], vs_parent_pp_p_holm=[0.03]
    )
    markdown = render_markdown(study_report(tmp_path, layer_swap_summary=swap))
    assert "### Per cell and cut (vs_parent_pp: p Holm-corrected over the table's 1 comparison)" in markdown
    assert "7 ± 0.5" in section(markdown, "Layer swap: which units carry the gap")
    assert "paired by seed" in section(markdown, "Layer swap: which units carry the gap")


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
    report = study_report(
        tmp_path,
        RUN_TIMES,
        layer_swap_summary=LAYER_SWAP,
        layer_swap_interactive=FIGURE,
        data_efficiency_summary=DATA_EFFICIENCY,
    )
    page, markdown = render_html(report), render_markdown(report)
    assert "<td>87.00 % ± 0.50</td>" in page
    assert "kedro run --pipeline layer_swap" not in page
    assert "![Test accuracy against cut](layer_swap.png)" in markdown
    assert "![Test accuracy against real images used](data_efficiency.png)" in markdown
    # The layer swap's figure drawn by plotly.js, inlined once; the data efficiency's, without one, as its PNG.
    assert page.count(plotly_js()) == 1
    assert page.count('class="plotly-graph-div"') == 1
    assert 'id="figure-layer_swap"' in page
    assert "Plotly.newPlot" in page
    assert page.count("<img ") == 1
    assert '<img alt="Test accuracy against real images used" src="data:image/png;base64,' in page
    assert not re.search(r"<script[^>]*\ssrc=", page)  # nothing fetched when it opens


def test_the_run_times_table_holds_every_pipeline_but_the_reports_own(tmp_path: Path):
    times = section(render_markdown(study_report(tmp_path, RUN_TIMES)), "Wall time of this run")
    rows = [line.split("|")[1:-1] for line in times.splitlines() if line.startswith("| ")]
    assert [[cell.strip() for cell in row] for row in rows] == [
        ["pipeline", "nodes", "seconds"],
        ["layer_swap", "5", "1180.0"],
    ]


def test_a_report_without_interactive_figures_carries_no_plotly_js(tmp_path: Path):
    (tmp_path / "layer_swap.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    page = render_html(study_report(tmp_path, layer_swap_summary=LAYER_SWAP))
    assert "<script" not in page
    assert page.count("<img ") == 1


def test_text_is_escaped_in_the_page_and_table_cells_keep_their_text_in_markdown(tmp_path: Path):
    table = pd.DataFrame({"variant": ["<b>bold</b>", "a|b"], "n": [3, float("nan")]})
    figure = Figure('A "quoted" <caption>', tmp_path / "figure.png")
    figure.png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    report = Report("R & D", table, [Section("S <1>", "layer_swap", True, "x < y", [("T", table)], [figure])])
    page, markdown = render_html(report), render_markdown(report)
    assert "<title>R &amp; D</title>" in page
    assert "<td>&lt;b&gt;bold&lt;/b&gt;</td>" in page
    assert "<p>x &lt; y</p>" in page
    assert '<img alt="A &#34;quoted&#34; &lt;caption&gt;"' in page
    assert "<figcaption>A &#34;quoted&#34; &lt;caption&gt;</figcaption>" in page
    assert "| <b>bold</b> | 3.0 |" in markdown  # Markdown renders its own text: nothing escaped but the pipe
    assert "| a\\|b        | –   |" in markdown
    assert '![A "quoted" <caption>](figure.png)' in markdown


def test_the_templates_ship_with_the_package():
    templates = files("mind_the_gap.results") / "templates"
    assert (templates / "report.html.j2").is_file()
    assert (templates / "report.md.j2").is_file()
