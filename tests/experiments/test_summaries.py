"""Every summary that compares cells pairs them by seed: the mean of the per-seed differences ± the 95% t-interval
of those differences, with its p-value, Holm-corrected over the table's family of comparisons.

The hand-computed case throughout (3 seeds): differences 0.10, 0.05, 0.15 points of accuracy, mean 10 points, sd 5,
half-width t(0.975, 2) * 5 / sqrt(3) = 4.30265 * 2.88675 = 12.4207 points; t = 10 / 2.88675 = sqrt(12), so
p = 1 - sqrt(12) / sqrt(14) = 0.074180 (Student's t with 2 degrees of freedom in closed form).
"""

from __future__ import annotations

import pandas as pd
import pytest

from mind_the_gap.analysis.statistics import holm
from mind_the_gap.experiments import ablations, baselines, data_efficiency, normalization

HIGH, LOW = [0.90, 0.80, 0.85], [0.80, 0.75, 0.70]  # per seed 0, 1, 2: differences 0.10, 0.05, 0.15
MEAN, HALF_WIDTH, P = 10.0, 12.4207, 0.074180


def rows(accuracies: list[float], seeds: list[int] | None = None, **columns: object) -> pd.DataFrame:
    seeds = seeds or list(range(len(accuracies)))
    return pd.DataFrame({**columns, "seed": seeds, "test_accuracy": accuracies})


def assert_hand_computed(row: pd.Series, name: str) -> None:
    assert row[name] == pytest.approx(MEAN)
    assert row[f"{name}_ci95"] == pytest.approx(HALF_WIDTH, abs=1e-4)
    assert row[f"{name}_n"] == 3
    assert row[f"{name}_p"] == pytest.approx(P, abs=1e-6)


def test_the_baselines_gap_is_paired_by_seed():
    runs = pd.concat([rows(HIGH, pipeline="baselines", cell="real"), rows(LOW, pipeline="baselines", cell="synthetic")])
    summary, metrics = baselines.summarize(runs)
    summary = summary.set_index("cell")
    assert_hand_computed(summary.loc["synthetic"], "gap_pp")
    assert summary.loc["synthetic", "gap_pp_p_holm"] == pytest.approx(P, abs=1e-6)  # a family of one
    assert summary.loc["real", "gap_pp"] == 0.0
    assert metrics["synthetic.gap_pp_ci95"]["value"] == pytest.approx(HALF_WIDTH, abs=1e-4)


def test_the_baselines_gap_pairs_only_the_seeds_both_sources_have():
    # Seed 3 of the real students has no synthetic partner: left out of the pairs, though in the real mean.
    runs = pd.concat(
        [
            rows([*HIGH, 0.10], [0, 1, 2, 3], pipeline="baselines", cell="real"),
            rows(LOW, pipeline="baselines", cell="synthetic"),
        ]
    )
    summary = baselines.summarize(runs)[0].set_index("cell")
    assert_hand_computed(summary.loc["synthetic"], "gap_pp")


def test_data_efficiency_compares_each_strategy_with_scratch_at_the_same_fraction():
    def students(strategy: str, accuracies: list[float], fraction: float = 0.5) -> pd.DataFrame:
        label = "1/2" if fraction == 0.5 else "1"
        return rows(
            accuracies,
            strategy=strategy,
            arm=strategy,
            lr_factor=0.3,
            fraction=fraction,
            fraction_label=label,
            real_images=400,
        )

    runs = pd.concat(
        [
            students("scratch", LOW),
            students("last 2", HIGH),
            students("last 1", [0.81, 0.77, 0.71]),  # 0.01, 0.02, 0.01
            students("scratch", [0.99, 0.99, 0.99], fraction=1.0),  # another fraction: never paired with these
        ]
    )
    reference = pd.concat([rows([0.95, 0.85, 0.90], cell="real"), rows([0.5, 0.5, 0.5], cell="synthetic")])
    config = data_efficiency.DataEfficiencyConfig(seeds=[0, 1, 2], fractions=[1, 0.5], convergence_check=None)
    summary, _, metrics = data_efficiency.summarize(reference, runs, config)
    summary = summary.set_index(["strategy", "fraction_label"])
    assert_hand_computed(summary.loc[("last 2", "1/2")], "vs_scratch_pp")
    assert pd.isna(summary.loc[("scratch", "1/2"), "vs_scratch_pp"])
    # Below real-only, paired: 0.95 - 0.90, 0.85 - 0.80, 0.90 - 0.85: 5 points on every seed.
    assert summary.loc[("last 2", "1/2"), "below_real_pp"] == pytest.approx(5.0)
    assert summary.loc[("last 2", "1/2"), "below_real_pp_ci95"] == pytest.approx(0.0, abs=1e-9)
    # One family: the two strategies' comparisons with scratch.
    p_values = [summary.loc[(s, "1/2"), "vs_scratch_pp_p"] for s in ("last 2", "last 1")]
    holm_values = [summary.loc[(s, "1/2"), "vs_scratch_pp_p_holm"] for s in ("last 2", "last 1")]
    assert holm_values == pytest.approx(holm(p_values))
    assert metrics["last 2.1/2.vs_scratch_pp"]["value"] == pytest.approx(MEAN)
    # Both arms win at 1/2 and have no other fraction compared: they beat scratch at every fraction of the table.
    assert summary.loc[("last 2", "1/2"), "beats_scratch_between"] == "every fraction"
    assert pd.isna(summary.loc[("scratch", "1/2"), "beats_scratch_between"])


def test_data_efficiency_names_the_fractions_between_which_an_arm_starts_to_beat_scratch():
    def gains(*by_fraction: float) -> pd.DataFrame:  # mean points over scratch at 1/2, 1/4, 1/8, 1/16
        fractions = [0.5, 0.25, 0.125, 0.0625]
        labels = ["1/2", "1/4", "1/8", "1/16"]
        return pd.DataFrame({"fraction": fractions, "fraction_label": labels, "vs_scratch_pp": by_fraction})

    assert data_efficiency.beats_scratch_between(gains(-3.0, -1.0, 0.5, 2.0)) == "1/4 and 1/8"
    assert data_efficiency.beats_scratch_between(gains(-3.0, 0.0, 0.5, 2.0)) == "1/4 and 1/8"  # a tie is no win
    # A win at 1/2 with a loss below it: it starts winning, for good, only below 1/8.
    assert data_efficiency.beats_scratch_between(gains(1.0, -1.0, -0.5, 2.0)) == "1/8 and 1/16"
    assert data_efficiency.beats_scratch_between(gains(1.0, 1.0, 0.5, 2.0)) == "every fraction"
    assert data_efficiency.beats_scratch_between(gains(1.0, 1.0, 0.5, -2.0)) == "no fraction"
    shuffled = gains(-3.0, -1.0, 0.5, 2.0).iloc[[2, 0, 3, 1]]  # the table's order does not matter
    assert data_efficiency.beats_scratch_between(shuffled) == "1/4 and 1/8"


def test_ablations_compare_each_variant_with_its_sources_baseline_and_the_sources_under_it():
    real, synthetic = rows([0.95, 0.85, 0.90], cell="real"), rows(LOW, cell="synthetic")
    augmentation = pd.concat(
        [
            rows(HIGH, factor="augmentation", variant="none", trained_on="synthetic"),
            rows([0.97, 0.88, 0.91], factor="augmentation", variant="none", trained_on="real"),
        ]
    )
    views = pd.DataFrame(columns=["variant", "trained_on"])
    summary, metrics = ablations.summarize(real, synthetic, views, [augmentation])
    summary = summary.set_index(["factor", "variant", "trained_on"])
    assert_hand_computed(summary.loc[("augmentation", "none", "synthetic")], "vs_baseline_pp")
    # Under the variant, real above synthetic: 0.07, 0.08, 0.06, mean 7 points, sd 1, half-width 2.48414.
    row = summary.loc[("augmentation", "none", "real")]
    assert row["gap_between_sources_pp"] == pytest.approx(7.0)
    assert row["gap_between_sources_pp_ci95"] == pytest.approx(4.30265 / 3**0.5, abs=1e-4)
    # Below the real baseline, paired: 0.95 - 0.90, 0.85 - 0.80, 0.90 - 0.85: 5 points on every seed.
    assert summary.loc[("augmentation", "none", "synthetic"), "gap_pp"] == pytest.approx(5.0)
    assert pd.isna(summary.loc[("baseline", "standard", "real"), "vs_baseline_pp"])
    family = summary["vs_baseline_pp_p"].tolist()
    assert summary["vs_baseline_pp_p_holm"].tolist() == pytest.approx(holm(family), nan_ok=True)
    assert metrics["augmentation.none.synthetic.vs_baseline_pp"]["value"] == pytest.approx(MEAN)


def test_normalization_variants_are_paired_with_the_synthetic_student_they_change():
    per_seed = pd.concat(
        [
            rows([0.95, 0.85, 0.90], variant="real", description="real-only"),
            rows(LOW, variant="synthetic", description="synthetic-only"),
            rows(HIGH, variant="adabn_all", description="AdaBN"),
        ],
        ignore_index=True,
    )
    summary, _, metrics = normalization.summarize_variants(per_seed)
    summary = summary.set_index("variant")
    assert_hand_computed(summary.loc["adabn_all"], "change_vs_synthetic_pp")
    assert summary.loc["synthetic", "change_vs_synthetic_pp"] == 0.0
    assert summary.loc["adabn_all", "gap_pp"] == pytest.approx(5.0)
    assert summary.loc["adabn_all", "change_vs_synthetic_pp_p_holm"] == pytest.approx(P, abs=1e-6)
    assert metrics["adabn_all.change_vs_synthetic_pp"]["value"] == pytest.approx(MEAN)
