"""Reporting: one node that reads every experiment's tables and figures and writes the report."""

from kedro.pipeline import Node, Pipeline

from mind_the_gap.pipelines.reporting.nodes import build_report

# The wall time of each pipeline of the run, which mind_the_gap.hooks.RunTimesHook writes before the report reads it.
RUN_TIMES = "run_times"
# What the report reads; any of them may be missing (a pipeline not run yet): see mind_the_gap.hooks.
OPTIONAL_INPUTS = [
    RUN_TIMES,
    "real_data_summary",
    "baselines_summary",
    "synthetic_recognisability",
    "layer_swap_summary",
    "layer_swap_interactive",
    "data_efficiency_summary",
    "data_efficiency_learning_rate_summary",
    "data_efficiency_interactive",
    "normalization_summary",
    "normalization_unit_profile",
    "normalization_interactive",
    "ablations_summary",
    "ablations_diversity",
    "ablations_interactive",
    "ablations_per_class_summary",
    "ablations_per_class_correlations",
    "ablations_per_class_interactive",
    "levers_summary",
    "levers_interactive",
    "stitching_summary",
    "stitching_interactive",
]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                build_report,
                {name: name for name in ["reporting_dir", *OPTIONAL_INPUTS]},
                ["report_html", "report_markdown"],
                name="build_report",
                namespace="reporting",
            )
        ]
    )
