"""The study's report: the headline beside the paper's figures, then one section per experiment (its tables as
mean ± 95% CI over seeds, its figures), then the wall time of the run. An experiment that has not run has its
section named as such."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from mind_the_gap.results.report import Figure, Report, Section, number, percent, with_intervals

TITLE = "Mind the gap between synthetic and real: the study's results"
# The paper's figures (ImageNet-100, ResNet-50; from its abstract and summaries).
PAPER = {
    "real": 0.878,
    "synthetic": 0.648,
    "last_units_recovered_pp": 18.4,  # units 15-17 trained on real data, the rest on synthetic
    "one_eighth_below_real_pp": 4.2,  # last 2 units fine-tuned on 1/8 of the real data
}
ACCURACY = ["test_accuracy", "n"]
RUN_TIMES_COLUMNS = ["pipeline", "nodes", "seconds"]


def study_report(
    figures_dir: Path,
    run_times: list[dict[str, Any]] | None = None,
    *,
    real_data_summary: pd.DataFrame | None = None,
    baselines_summary: pd.DataFrame | None = None,
    synthetic_recognisability: pd.DataFrame | None = None,
    layer_swap_summary: pd.DataFrame | None = None,
    layer_swap_interactive: go.Figure | None = None,
    data_efficiency_summary: pd.DataFrame | None = None,
    data_efficiency_interactive: go.Figure | None = None,
    normalization_summary: pd.DataFrame | None = None,
    normalization_unit_profile: pd.DataFrame | None = None,
    normalization_interactive: go.Figure | None = None,
    ablations_summary: pd.DataFrame | None = None,
    ablations_diversity: pd.DataFrame | None = None,
    ablations_interactive: go.Figure | None = None,
) -> Report:
    """The report of what the experiments wrote (None where one has not run); the PNGs are read from
    ``figures_dir``; ``run_times`` has one row per pipeline of the run (``pipeline``, ``nodes``, ``seconds``)."""
    png = lambda name: figures_dir / f"{name}.png"  # noqa: E731 - the PNGs the experiments wrote
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
            "Input statistics, the per-unit profile of the baseline students, and fixes through normalisation."
            + frechet_caveat(normalization_unit_profile),
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
        run_times_section(run_times),
    ]
    return Report(TITLE, headline(baselines_summary, layer_swap_summary, data_efficiency_summary), sections)


def _table(caption: str, table: pd.DataFrame | None, columns: list[str]) -> list[tuple[str, pd.DataFrame]]:
    return [] if table is None else [(caption, with_intervals(table, columns))]


def frechet_caveat(profile: pd.DataFrame | None) -> str:
    """A sentence when the profile's Fréchet distances rest on fewer images than feature dimensions (their
    covariances are then rank-deficient), else nothing."""
    if profile is None or profile["frechet_images"].iloc[0] >= profile["frechet_dimensions"].iloc[0]:
        return ""
    row = profile.iloc[0]
    real_synthetic, train_test = number(row["frechet_real_synthetic_mean"]), number(row["frechet_real_train_test_mean"])
    return (
        f" The Fréchet distances in the penultimate features (real vs synthetic {real_synthetic}, real training vs "
        f"test {train_test}) rest on {row['frechet_images']:,} images per set, fewer than the "
        f"{row['frechet_dimensions']:,} dimensions: they are biased upward and compare only with each other, within "
        "this run."
    )


def run_times_section(run_times: list[dict[str, Any]] | None) -> Section:
    """The wall seconds of each experiment pipeline of the run (the report's own left out), to a tenth of a second."""
    times = pd.DataFrame(run_times or [], columns=RUN_TIMES_COLUMNS)
    times = times[times["pipeline"] != "reporting"].assign(seconds=lambda t: t["seconds"].round(1))
    ran = "Seconds per pipeline, summed over its nodes that ran in this `kedro run`."
    none = "No experiment pipeline ran in this `kedro run` (or its runner runs no hooks, as ParallelRunner)."
    return Section(
        "Wall time of this run", "", True, ran if len(times) else none, [("Per pipeline", times)] if len(times) else []
    )


def headline(
    baselines: pd.DataFrame | None, layer_swap: pd.DataFrame | None, data_efficiency: pd.DataFrame | None
) -> pd.DataFrame:
    """The paper's four figures beside this run's (a dash where the experiment has not run)."""
    accuracy = {}
    if baselines is not None:
        rows = baselines.set_index("cell")
        columns = ["test_accuracy_mean", "test_accuracy_ci95", "n"]
        accuracy = {cell: tuple(rows.loc[cell, columns]) for cell in ("real", "synthetic") if cell in rows.index}
    rows = []
    for cell in ("real", "synthetic"):
        mean, ci, n = accuracy.get(cell, (math.nan, math.nan, 0))
        rows.append(
            {
                "figure": f"{cell}-only test accuracy",
                "paper": percent(PAPER[cell]),
                "this run": percent(mean, ci) + (f" (n={int(n)} seeds)" if n else ""),
            }
        )
    gap = 100 * (accuracy["real"][0] - accuracy["synthetic"][0]) if len(accuracy) == 2 else math.nan
    rows.append(
        {
            "figure": "gap (points)",
            "paper": f"{100 * (PAPER['real'] - PAPER['synthetic']):.1f}",
            "this run": number(gap),
        }
    )
    recovered = "–"
    if layer_swap is not None and "synthetic" in accuracy:
        last = layer_swap[(layer_swap["arrangement"] == "prefix") & (layer_swap["from"] == "synthetic")]
        if len(last):
            row = last.loc[last["cut"].astype(float).idxmax()]
            gained = 100 * (row["test_accuracy_mean"] - accuracy["synthetic"][0])
            recovered = f"+{gained:.1f} (units {row['trained']}: {100 * row['gap_recovered']:.0f} % of the gap)"
    rows.append(
        {
            "figure": "last units trained on real data, the rest kept from the synthetic student (points)",
            "paper": f"+{PAPER['last_units_recovered_pp']} (units 15-17: 80 % of the gap)",
            "this run": recovered,
        }
    )
    below = "–"
    if data_efficiency is not None:
        match = data_efficiency[
            (data_efficiency["strategy"] == "last 2") & (data_efficiency["fraction_label"].astype(str) == "1/8")
        ]
        if len(match):
            below = f"{match['below_real_pp'].iloc[0]:.1f} below real-only"
    rows.append(
        {
            "figure": "last 2 units fine-tuned on 1/8 of the real data (points)",
            "paper": f"{PAPER['one_eighth_below_real_pp']} below real-only",
            "this run": below,
        }
    )
    return pd.DataFrame(rows)
