"""Reporting: what every experiment pipeline wrote, in one report; a pipeline that has not run is named as such.

Each input is an experiment's table or interactive figure; one that is not on disk arrives as None (the reporting
pipeline's inputs are optional, see ``mind_the_gap.hooks``), so the report says which pipeline to run instead of
failing. The PNGs are read from the reporting folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from mind_the_gap.report import Figure, Section, headline, render_html, render_markdown, with_intervals

TITLE = "Mind the gap between synthetic and real: the study's results"
ACCURACY = ["test_accuracy", "n"]


def build_report(
    run_times: list[dict[str, Any]] | None,
    real_data_summary: pd.DataFrame | None,
    baselines_summary: pd.DataFrame | None,
    synthetic_recognisability: pd.DataFrame | None,
    layer_swap_summary: pd.DataFrame | None,
    layer_swap_interactive: go.Figure | None,
    data_efficiency_summary: pd.DataFrame | None,
    data_efficiency_interactive: go.Figure | None,
    normalization_summary: pd.DataFrame | None,
    normalization_unit_profile: pd.DataFrame | None,
    normalization_interactive: go.Figure | None,
    ablations_summary: pd.DataFrame | None,
    ablations_diversity: pd.DataFrame | None,
    ablations_interactive: go.Figure | None,
    reporting_dir: Path,
) -> tuple[str, str]:
    """The report as self-contained HTML and as Markdown: the headline beside the paper's figures, then each
    experiment's tables (mean ± 95% CI over seeds, n seeds) and figures, interactive where there are."""
    png = lambda name: reporting_dir / f"{name}.png"  # noqa: E731 - the PNGs other pipelines wrote
    sections = [
        Section(
            "Data",
            "data_processing",
            real_data_summary is not None,
            "Images per class in each split of the real source.",
            [("Split", real_data_summary)] if real_data_summary is not None else [],
            [Figure("Real training images, one row per class", png("real_samples"))],
        ),
        Section(
            "Generated images",
            "baselines",
            synthetic_recognisability is not None,
            "How well the synthetic training images carry their class, to the first seed's real-trained student.",
            [("Recognisability per class", synthetic_recognisability)] if synthetic_recognisability is not None else [],
            [
                Figure("Generator samples, one row per class", png("generator_samples")),
                Figure("Synthetic training images, one row per class", png("synthetic_samples")),
            ],
        ),
        Section(
            "Baselines",
            "baselines",
            baselines_summary is not None,
            "Students trained on one source, tested on the real test set.",
            _table("Test accuracy", baselines_summary, ["cell", *ACCURACY, "gap_pp"]),
        ),
        Section(
            "Layer swap: which units carry the gap",
            "layer_swap",
            layer_swap_summary is not None,
            "Units kept (frozen) from a baseline student of one source, every other unit trained on the other.",
            _table(
                "Per cell and cut",
                layer_swap_summary,
                ["arrangement", "from", "kept", "trained", "real_units", *ACCURACY, "gap_recovered"],
            ),
            [Figure("Test accuracy against cut", png("layer_swap"), layer_swap_interactive)],
        ),
        Section(
            "Data efficiency",
            "data_efficiency",
            data_efficiency_summary is not None,
            "The synthetic students' last units fine-tuned on fractions of the real data, against students "
            "trained from scratch on the same fraction.",
            _table(
                "Per strategy and fraction",
                data_efficiency_summary,
                ["strategy", "fraction_label", "real_images", *ACCURACY, "below_real_pp", "more_steps_gain_pp"],
            ),
            [Figure("Test accuracy against real images used", png("data_efficiency"), data_efficiency_interactive)],
        ),
        Section(
            "Normalization",
            "normalization",
            normalization_summary is not None,
            "Input statistics, the per-unit profile of the baseline students, and fixes through normalisation.",
            [
                *_table(
                    "Normalisation variants and AdaBN",
                    normalization_summary,
                    ["variant", "description", *ACCURACY, "gap_pp", "change_vs_synthetic_pp"],
                ),
                *_table(
                    "Per unit",
                    normalization_unit_profile,
                    [
                        "unit",
                        "name",
                        "bn_shift",
                        "cka_real_synthetic",
                        "cka_real_real",
                        "probe_real",
                        "probe_synthetic",
                    ],
                ),
            ],
            [
                Figure(
                    "Where real and synthetic part inside the student", png("normalization"), normalization_interactive
                ),
                Figure("Pixel values, real vs synthetic", png("normalization_histograms")),
            ],
        ),
        Section(
            "Ablations",
            "ablations",
            ablations_summary is not None,
            "The other suspects: augmentation, texture vs shape, oracle prompts, diversity, mixing.",
            [
                *_table(
                    "Per factor and variant",
                    ablations_summary,
                    ["factor", "variant", "trained_on", *ACCURACY, "gap_pp", "gap_between_sources_pp", "shape_bias"],
                ),
                *_table("Diversity of each set", ablations_diversity, ["set", "within_class_spread", "share_of_real"]),
            ],
            [Figure("What each factor does to the gap", png("ablations"), ablations_interactive)],
        ),
    ]
    times = pd.DataFrame(run_times or [], columns=["pipeline", "nodes", "seconds"])
    times = times[times["pipeline"] != "reporting"].assign(seconds=lambda t: t["seconds"].round(1))
    ran = "Seconds per pipeline, summed over its nodes that ran in this `kedro run`."
    none = "No experiment pipeline ran in this `kedro run` (or its runner runs no hooks, as ParallelRunner)."
    sections.append(
        Section(
            "Wall time of this run",
            "",
            True,
            ran if len(times) else none,
            [("Per pipeline", times)] if len(times) else [],
        )
    )
    summary = headline(baselines_summary, layer_swap_summary, data_efficiency_summary)
    return render_html(TITLE, summary, sections), render_markdown(TITLE, summary, sections)


def _table(caption: str, table: pd.DataFrame | None, columns: list[str]) -> list[tuple[str, pd.DataFrame]]:
    return [] if table is None else [(caption, with_intervals(table, columns))]
