"""The study's report: the headline beside the paper's figures, then one section per experiment (its tables as
mean ± 95% CI over seeds, its figures), then the wall time of the run. An experiment that has not run has its
section named as such."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from mind_the_gap.analysis.texture_shape import VIEWS
from mind_the_gap.results.report import Figure, Report, Section, number, percent, share, with_intervals

TITLE = "Mind the gap between synthetic and real: the study's results"
# The paper's figures (ImageNet-100, ResNet-50; from its abstract and summaries).
PAPER = {
    "real": 0.878,
    "synthetic": 0.648,
    "last_units_recovered_pp": 18.4,  # units 15-17 trained on real data, the rest on synthetic
    "one_eighth_below_real_pp": 4.2,  # last 2 units fine-tuned on 1/8 of the real data
}
ACCURACY = ["test_accuracy", "n"]
PAIRED = (
    "Comparisons are paired by seed (students of one seed share initial weights and batch order): the mean of the "
    "per-seed differences in points ± its 95% t-interval, with the paired t-test's p-value."
)
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
    data_efficiency_learning_rate_summary: pd.DataFrame | None = None,
    data_efficiency_interactive: go.Figure | None = None,
    normalization_summary: pd.DataFrame | None = None,
    normalization_unit_profile: pd.DataFrame | None = None,
    normalization_interactive: go.Figure | None = None,
    ablations_summary: pd.DataFrame | None = None,
    ablations_diversity: pd.DataFrame | None = None,
    ablations_interactive: go.Figure | None = None,
    ablations_per_class_summary: pd.DataFrame | None = None,
    ablations_per_class_correlations: pd.DataFrame | None = None,
    ablations_per_class_interactive: go.Figure | None = None,
    levers_summary: pd.DataFrame | None = None,
    levers_interactive: go.Figure | None = None,
    stitching_summary: pd.DataFrame | None = None,
    stitching_interactive: go.Figure | None = None,
) -> Report:
    """The report of what the experiments wrote (None where one has not run); the PNGs are read from
    ``figures_dir``; ``run_times`` has one row per pipeline of the run (``pipeline``, ``nodes``, ``seconds``)."""
    png = lambda name: figures_dir / f"{name}.png"  # noqa: E731 - the PNGs the experiments wrote
    views = views_by_source(ablations_summary)
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
            "Students trained on one source, tested on the real test set. " + PAIRED,
            _table("Test accuracy", baselines_summary, ["cell", *ACCURACY, "gap_pp", "gap_pp_p"]),
        ),
        Section(
            "Layer swap: which units carry the gap",
            "layer_swap",
            layer_swap_summary is not None,
            "Units kept (frozen) from a baseline student of one source, every other unit trained on the other; beside "
            "them the same-source controls, the other units retrained on the kept units' own source. "
            + PAIRED
            + " vs_parent_pp: points gained over the baseline student whose units a cell keeps. gap_recovered: 0 at "
            "the synthetic-only students, 1 at the real-only ones; gap_recovered_control: 0 at the synthetic→synthetic "
            "control of the same arrangement and cut, 1 at the real→real one (the gap net of what retraining costs by "
            "itself); both with Fieller's 95% interval (delta: the delta method's, where Fieller's is unbounded).",
            _table(
                "Per cell and cut" + _holm_caption(layer_swap_summary, "vs_parent_pp"),
                layer_swap_summary,
                [
                    "arrangement",
                    "from",
                    "kept",
                    "trained",
                    "trained_on",
                    *ACCURACY,
                    "vs_parent_pp",
                    "vs_parent_pp_p_holm",
                    "gap_recovered",
                    "gap_recovered_control",
                ],
            ),
            [Figure("Test accuracy against cut", png("layer_swap"), layer_swap_interactive)],
        ),
        Section(
            "Data efficiency",
            "data_efficiency",
            data_efficiency_summary is not None,
            "On fractions of the real data: the synthetic students' last units fine-tuned from their weights (all: "
            "every unit, pretrain on synthetic and fine-tune on real) or re-initialised and trained under the frozen "
            "lower units, against students trained from scratch on the same fraction. Each arm's learning rate "
            "(lr_factor, times training.lr) was chosen once, at one fraction, on the real validation set, and used "
            "at every fraction. "
            + PAIRED
            + " vs_scratch_pp: points gained over the from-scratch student of the same seed and subset; "
            "more_steps_gain_pp: what seed 0's students gained with a larger step budget (the convergence check)."
            + crossover_sentence(data_efficiency_summary),
            _table(
                "Per strategy and fraction" + _holm_caption(data_efficiency_summary, "vs_scratch_pp"),
                data_efficiency_summary,
                [
                    "strategy",
                    "lr_factor",
                    "fraction_label",
                    "real_images",
                    *ACCURACY,
                    "below_real_pp",
                    "vs_scratch_pp",
                    "vs_scratch_pp_p_holm",
                    "more_steps_gain_pp",
                ],
            )
            + _table(
                "The learning-rate choice: validation accuracy per arm and factor",
                data_efficiency_learning_rate_summary,
                ["arm", "lr_factor", "fraction_label", "val_accuracy", "n", "chosen"],
            ),
            [Figure("Test accuracy against real images used", png("data_efficiency"), data_efficiency_interactive)],
        ),
        Section(
            "Normalization",
            "normalization",
            normalization_summary is not None,
            "Input statistics, the per-unit profile of the baseline students, and fixes through normalisation. "
            + PAIRED
            + " Per unit, CKA compares real- and synthetic-trained students of the same seed (cka_real_synthetic: "
            "they share initial weights and batch order) and of different seeds (cka_real_synthetic_across_seeds: "
            "real seed i vs synthetic seed j ≠ i); the reference level, cka_real_real, pairs real students of "
            "different seeds, so it is to be read beside the across-seeds pairs (mean ± 95% CI over pairs of "
            "students, which share students: a rough interval)." + frechet_caveat(normalization_unit_profile),
            [
                *_table(
                    "Normalisation variants and AdaBN" + _holm_caption(normalization_summary, "change_vs_synthetic_pp"),
                    normalization_summary,
                    [
                        "variant",
                        "description",
                        *ACCURACY,
                        "gap_pp",
                        "change_vs_synthetic_pp",
                        "change_vs_synthetic_pp_p_holm",
                    ],
                ),
                *_table(
                    "Per unit",
                    normalization_unit_profile,
                    [
                        "unit",
                        "name",
                        "bn_shift",
                        "cka_real_synthetic",
                        "cka_real_synthetic_across_seeds",
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
            "The other suspects: augmentation; texture vs shape; reconstruction, img2img from real training images "
            "at each strength (the reconstruction dial of arXiv 2311.13090, not the oracle); the oracle, Stable "
            "unCLIP conditioned on real images, where it ran; diversity; mixing. "
            + PAIRED
            + " vs_baseline_pp: points gained over the baseline student of the same source; vs_shared_bn_pp: a "
            "mixed student with each source's own BatchNorm statistics (BN per source, tested with the real ones) "
            "against the same mix with shared statistics.",
            [
                *_table(
                    "Per factor and variant" + _holm_caption(ablations_summary, "vs_baseline_pp"),
                    ablations_summary,
                    [
                        "factor",
                        "variant",
                        "trained_on",
                        *ACCURACY,
                        "gap_pp",
                        "vs_baseline_pp",
                        "vs_baseline_pp_p_holm",
                        "gap_between_sources_pp",
                        "vs_shared_bn_pp",
                        "shape_bias",
                    ],
                ),
                *_table(
                    "Real vs synthetic students on each view of the test set: shape (edges) and texture (patches "
                    "shuffled), and the blur, noise and contrast controls. between_sources_pp: the real students' "
                    "lead on the view; extra_gap_pp: that lead minus their lead on the test set itself. A lead that "
                    "grows on the shape view but not on the controls points to texture; one that grows on the "
                    "controls too, to general brittleness" + _holm_caption(views, "extra_gap_pp"),
                    views,
                    [
                        "variant",
                        "view",
                        "real_accuracy",
                        "synthetic_accuracy",
                        "between_sources_pp",
                        "extra_gap_pp",
                        "extra_gap_pp_p_holm",
                    ],
                ),
                *_table(
                    "Fidelity and diversity of each set in the real-trained students' penultimate features, mean ± "
                    "95% CI over those judges: recognisability (the share a judge puts in the image's class), "
                    "within-class spread as a share of the real pool's, precision and density (fidelity: near real "
                    "images), recall and coverage (diversity: the real variety reached), each against real training "
                    "images; the row real is a second sample of the real pool, the level of a set drawn like it",
                    ablations_diversity,
                    [
                        "set",
                        "recognisability",
                        "share_of_real",
                        "precision",
                        "recall",
                        "density",
                        "coverage",
                        "frechet_distance",
                    ],
                ),
                *_table(
                    "Per class, the largest gap first: the real-only students' lead over the synthetic-only ones "
                    "on the class (gap_pp, paired by seed), beside the judges' measures of the class's synthetic "
                    "training images (mean over judges)" + _holm_caption(ablations_per_class_summary, "gap_pp"),
                    ablations_per_class_summary,
                    [
                        "class",
                        "real_accuracy",
                        "synthetic_accuracy",
                        "gap_pp",
                        "gap_pp_p_holm",
                        "recognisability",
                        "precision",
                        "recall",
                        "coverage",
                        "frechet_distance",
                    ],
                ),
                *_table(
                    "Which judged measure points at the classes the synthetic students lose: Spearman's rank "
                    "correlation with the per-class gap over the classes (exploratory: one class is one point)",
                    ablations_per_class_correlations,
                    ["measure", "spearman_with_gap"],
                ),
            ],
            [
                Figure("What each factor does to the gap", png("ablations"), ablations_interactive),
                Figure("Per-class gaps", png("ablations_per_class"), ablations_per_class_interactive),
            ],
        ),
        Section(
            "Levers",
            "levers",
            levers_summary is not None,
            "What users of synthetic data try next, each asked the layer swap's question: the lever's synthetic "
            "students, and from each the layer swap's headline student (the units after those kept retrained on "
            "real images). " + PAIRED + " vs_baseline_pp: points gained over the synthetic baseline students; "
            "remaining_recovered: the share of the gap left after the lever that the headline students recover (0 "
            "at the lever's students, 1 at the real baselines), with Fieller's 95% interval. more_images: the "
            "synthetic set at a multiple of its images a class, at the recipe's epochs or at the synthetic "
            "baselines' optimizer steps; filtering: of each class's generated images, the share a judge is most "
            "confident show their class, topped up to the set's size from a larger generation; the judge is a "
            "student of the study's recipe trained on the generator pool (real images no other student sees).",
            _table(
                "Per lever and variant (none: the synthetic baselines)"
                + _holm_caption(levers_summary, "vs_baseline_pp"),
                levers_summary,
                [
                    "lever",
                    "variant",
                    *ACCURACY,
                    "gap_pp",
                    "vs_baseline_pp",
                    "vs_baseline_pp_p_holm",
                    "swap_kept",
                    "swap_accuracy",
                    "remaining_recovered",
                ],
            ),
            [Figure("What each lever does to the gap", png("levers"), levers_interactive)],
        ),
        Section(
            "Stitching",
            "stitching",
            stitching_summary is not None,
            "Model stitching (Bansal et al., 2021): the units 0..k-1 of one baseline student (the bottom) joined to "
            "the units k..last of another (the top) through a 1x1 convolution and a BatchNorm trained on real "
            "images, both students frozen: where synthetic features are worse, without letting any unit adapt. "
            "Seed i's bottom meets seed i+1's top in every arrangement, so real-real (two real students) is what "
            "stitching costs by itself. " + PAIRED + " vs_real_real_pp: points above the real-real stitch at the "
            "same cut, paired by the bottom's seed (negative: below). synthetic_to_real near real-real says the "
            "synthetic student's lower units carry what the real student's upper units need, so the gap is made "
            "after the cut; real_to_synthetic says how far the synthetic student's upper units can use real features.",
            _table(
                "Per cut and arrangement (bottom_to_top)" + _holm_caption(stitching_summary, "vs_real_real_pp"),
                stitching_summary,
                [
                    "cut",
                    "arrangement",
                    "bottom_units",
                    "top_units",
                    *ACCURACY,
                    "vs_real_real_pp",
                    "vs_real_real_pp_p_holm",
                ],
            ),
            [Figure("Stitched students' accuracy against cut", png("stitching"), stitching_interactive)],
        ),
        run_times_section(run_times),
    ]
    return Report(TITLE, headline(baselines_summary, layer_swap_summary, data_efficiency_summary), sections)


def _table(caption: str, table: pd.DataFrame | None, columns: list[str]) -> list[tuple[str, pd.DataFrame]]:
    return [] if table is None else [(caption, with_intervals(table, columns))]


def views_by_source(summary: pd.DataFrame | None) -> pd.DataFrame | None:
    """The ablations summary's views of the test set as one row per variant tested on them and view (the test set
    itself first): each source's accuracy, the real students' lead, and how far it exceeds their lead on the test
    set, paired by seed; None where no variant's students of both sources were tested on the views."""
    if summary is None or "shape_extra_gap_pp" not in summary:
        return None
    rows = summary.set_index(["factor", "variant", "trained_on"])
    table = []
    for factor, variant in rows[rows["shape_extra_gap_pp"].notna()].index.droplevel("trained_on").unique():
        real, synthetic = rows.loc[(factor, variant, "real")], rows.loc[(factor, variant, "synthetic")]
        for view in ("test", *VIEWS):
            lead = "gap_between_sources_pp" if view == "test" else f"{view}_between_sources_pp"
            extra = f"{view}_extra_gap_pp"  # none for the test set itself
            table.append(
                {
                    "variant": f"{factor}: {variant}",
                    "view": view,
                    "real_accuracy_mean": real[f"{view}_accuracy_mean"],
                    "real_accuracy_ci95": real[f"{view}_accuracy_ci95"],
                    "synthetic_accuracy_mean": synthetic[f"{view}_accuracy_mean"],
                    "synthetic_accuracy_ci95": synthetic[f"{view}_accuracy_ci95"],
                    "between_sources_pp": real[lead],
                    "between_sources_pp_ci95": real[f"{lead}_ci95"],
                    **{f"extra_gap_pp{end}": real.get(f"{extra}{end}", math.nan) for end in ("", "_ci95", "_p_holm")},
                }
            )
    return pd.DataFrame(table)


def _holm_caption(table: pd.DataFrame | None, name: str) -> str:
    """What the caption of a table that tests a family of comparisons says of its p-values."""
    tested = 0 if table is None or f"{name}_p_holm" not in table else int(table[f"{name}_p_holm"].notna().sum())
    plural = "s" if tested > 1 else ""
    return f" ({name}: p Holm-corrected over the table's {tested} comparison{plural})" if tested else ""


def crossover_sentence(summary: pd.DataFrame | None) -> str:
    """Per arm, the pair of fractions between which its mean gain over scratch turns positive as the real data
    shrinks, with the paired gain at each; nothing where the summary has none."""
    if summary is None or "beats_scratch_between" not in summary:
        return ""
    arms = summary.dropna(subset=["beats_scratch_between"])
    parts = []
    for arm, rows in arms.groupby("strategy", sort=False):
        where = rows["beats_scratch_between"].iloc[0]
        gains = rows.set_index(rows["fraction_label"].astype(str))
        if " and " in where:
            above, below = where.split(" and ")
            where = (
                f"between {above} ({points(gains.loc[above], 'vs_scratch_pp')}) and "
                f"{below} ({points(gains.loc[below], 'vs_scratch_pp')})"
            )
        else:
            where = f"at {where}"
        parts.append(f"{arm}: {where}")
    if not parts:
        return ""
    return (
        " Where each arm's mean gain over scratch turns positive as the real data shrinks (a positive mean, not a "
        "significant one: see the Holm-corrected p): " + "; ".join(parts) + "."
    )


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
    """The paper's four figures beside this run's (a dash where the experiment has not run); the layer swap's is
    its headline cell (``layer_swap.headline_cut``), named."""
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
    gap = "–"
    if len(accuracy) == 2:  # paired by seed where the summary has it
        synthetic = baselines.set_index("cell").loc["synthetic"]
        gap = (
            points(synthetic, "gap_pp")
            if "gap_pp" in synthetic
            else number(100 * (accuracy["real"][0] - accuracy["synthetic"][0]))
        )
    rows.append(
        {
            "figure": "gap (points)",
            "paper": f"{100 * (PAPER['real'] - PAPER['synthetic']):.1f}",
            "this run": gap,
        }
    )
    rows.append(
        {
            "figure": "last units trained on real data, the rest kept from the synthetic student (points)",
            "paper": f"+{PAPER['last_units_recovered_pp']} (units 15-17: 80 % of the gap)",
            "this run": _headline_cell(layer_swap),
        }
    )
    below = "–"
    if data_efficiency is not None:
        match = data_efficiency[
            (data_efficiency["strategy"] == "last 2") & (data_efficiency["fraction_label"].astype(str) == "1/8")
        ]
        if len(match):
            below = f"{points(match.iloc[0], 'below_real_pp')} below real-only"
    rows.append(
        {
            "figure": "last 2 units fine-tuned on 1/8 of the real data (points)",
            "paper": f"{PAPER['one_eighth_below_real_pp']} below real-only",
            "this run": below,
        }
    )
    return pd.DataFrame(rows)


def _headline_cell(layer_swap: pd.DataFrame | None) -> str:
    """The layer swap's headline cell: points over the synthetic students, paired, and the share of the gap, against
    the baselines and against the same-source controls, each with its interval; a dash where it has not run."""
    if layer_swap is None or "headline" not in layer_swap:
        return "–"
    rows = layer_swap[layer_swap["headline"].astype(str) == "True"]
    if not len(rows):
        return "–"
    row = rows.iloc[0]
    ends = lambda name: [row.get(f"{name}{end}", math.nan) for end in ("", "_low", "_high", "_method")]  # noqa: E731
    recovered = f"{share(*ends('gap_recovered'))} of the gap"
    if pd.notna(row.get("gap_recovered_control", math.nan)):
        recovered += f"; {share(*ends('gap_recovered_control'))} against the same-source controls"
    sign = "+" if row["vs_parent_pp"] >= 0 else ""
    cut = f"units {row['trained']}, layer_swap.headline_cut {int(row['cut'])}"
    return f"{sign}{points(row, 'vs_parent_pp')} ({cut}: {recovered})"


def points(row: pd.Series, name: str) -> str:
    """A difference in points with its 95% CI half-width where the row has one: ``9.63 ± 1.2``."""
    ci = row.get(f"{name}_ci95", math.nan)
    return number(row[name]) + ("" if pd.isna(ci) else f" ± {number(ci)}")
