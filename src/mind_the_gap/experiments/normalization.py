"""Normalization: do synthetic and real images differ in their statistics, and where in the student does it show?

- Input statistics of both training sources (``analysis.input_statistics``) and the per-unit profile of the
  baseline students (``analysis.profile``).
- Fixes through normalisation: synthetic students normalised with the synthetic set's statistics (at train and test
  time, or with each source's own), and AdaBN: BatchNorm statistics re-estimated on unlabelled real images.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from pydantic import Field

from mind_the_gap.analysis.cache import cached_table
from mind_the_gap.analysis.profile import ProfileConfig
from mind_the_gap.analysis.statistics import by_seed, paired_columns, paired_difference, with_holm
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.devices import resolve_device
from mind_the_gap.experiments.study import (
    StudentJob,
    Study,
    as_metrics,
    load_students,
    parent_keys,
    summarize_runs,
    views,
)
from mind_the_gap.models.units import format_units, resolve_units
from mind_the_gap.training import adapt, engine
from mind_the_gap.training.adapt import adapt_batchnorm
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.engine import evaluate
from mind_the_gap.training.student_cache import code_version


class NormalizationConfig(ProfileConfig):
    adabn_units: list[str] = Field(["all", "-3"], min_length=1, description="units adapted: all, or a unit range")
    synthetic_statistics: bool = Field(
        True,
        description="train the synthetic students normalised with the synthetic set's statistics (one per seed); "
        "false leaves their two variants out and trains no student",
    )


def plan(config: NormalizationConfig, training: TrainConfig) -> list[StudentJob]:
    """Synthetic-only students, one per seed on the stored set ``synthetic_train``, normalised with its own
    statistics at train and test time; none where ``config.synthetic_statistics`` is off."""
    if not config.synthetic_statistics:
        return []
    recipe = training.model_copy(update={"normalization": "train"})
    return [
        StudentJob(
            f"normalization/synthetic statistics/seed{seed}",
            seed,
            views("synthetic_train"),
            columns={"statistics": "synthetic"},
            training=recipe,
        )
        for seed in config.seeds
    ]


def input_metrics(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The input statistics over all images (``analysis.input_statistics``'s ``all`` rows) as metrics."""
    columns = ("real_mean", "real_std", "synthetic_mean", "synthetic_std", "wasserstein")
    overall = table[table["class"] == "all"]
    return as_metrics(
        {
            f"input.{column}.channel{row.channel}": getattr(row, column)
            for row in overall.itertuples()
            for column in columns
        }
    )


def profile_metrics(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The per-unit profile's means (``unit3.cka_real_synthetic_mean``) and the Fréchet distances as metrics."""
    per_unit = {
        f"unit{row.unit}.{column}": getattr(row, column)
        for row in table.itertuples()
        for column in table.columns
        if column.endswith("_mean") and not column.startswith("frechet")
    }
    frechet = {
        f"{name}_mean": table[f"{name}_mean"].iloc[0] for name in ("frechet_real_synthetic", "frechet_real_train_test")
    }
    return as_metrics(per_unit | frechet)


def compare_variants(
    real_runs: pd.DataFrame,
    synthetic_runs: pd.DataFrame,
    synthetic_statistics_runs: pd.DataFrame,
    real_train: ImageSet,
    study: Study,
    config: NormalizationConfig,
    analyses: Path,
) -> pd.DataFrame:
    """Test accuracy on real images of every variant and seed: one row each, with its ``variant`` and
    ``description``.

    Variants: the baselines (real statistics everywhere); synthetic statistics at train and test time (the students
    of ``plan``, where ``config.synthetic_statistics`` is on); each source's own (those students tested on real
    images normalised with real statistics); and the baseline synthetic students after AdaBN on unlabelled real
    training images, for every ``adabn_units``. Cached in ``analyses`` by the students' keys, the images, the
    settings, the real statistics and the code it runs.
    """
    runs = {"real": real_runs, "synthetic": synthetic_runs}
    if config.synthetic_statistics:
        runs["synthetic-statistics"] = synthetic_statistics_runs
    key = {
        "analysis": "compare_normalizations",
        "code": code_version((adapt, engine, sys.modules[__name__])),
        "config": config.model_dump(mode="json"),
        "students": {source: parent_keys(rows, config.seeds, source, "normalization") for source, rows in runs.items()},
        "data": [real_train.fingerprint(), study.test.fingerprint()],
        "real_statistics": {"mean": list(study.real_statistics.mean), "std": list(study.real_statistics.std)},
    }
    return cached_table(analyses, key, lambda: _per_seed(runs, real_train, study, config))


def _per_seed(
    runs: dict[str, pd.DataFrame], real_train: ImageSet, study: Study, config: NormalizationConfig
) -> pd.DataFrame:
    real_runs, synthetic_runs = runs["real"], runs["synthetic"]
    seeds, training, test = config.seeds, study.training, study.test
    device = resolve_device(training.device, allow_cpu=training.allow_cpu)
    rows = []

    def add(variant: str, description: str, seed: int, accuracy: float) -> None:
        rows.append({"variant": variant, "description": description, "seed": seed, "test_accuracy": accuracy})

    for r in real_runs[real_runs["seed"].isin(seeds)].itertuples():
        add("real", "real-only, real statistics", r.seed, r.test_accuracy)
    for seed, (_, result) in load_students(synthetic_runs, seeds, "synthetic", study, test).items():
        add("synthetic", "synthetic-only, real statistics (the baselines)", seed, result.test.top1)
        for units in config.adabn_units:
            model, _ = load_students(synthetic_runs, [seed], "synthetic", study, test)[seed]  # a fresh copy to adapt
            spec = None if units == "all" else units
            label = "all" if spec is None else format_units(resolve_units(model, spec))
            adapt_batchnorm(model.to(device), real_train, result.normalization, spec, training.eval_batch_size)
            add(
                f"adabn_{label}",
                f"synthetic-only, then AdaBN on real training images (units {label})",
                seed,
                evaluate(model, test, result.normalization, training).top1,
            )
    own = {}
    if "synthetic-statistics" in runs:
        own = load_students(runs["synthetic-statistics"], seeds, "synthetic-statistics", study, test)
    for seed, (model, result) in own.items():
        add("synthetic_statistics", "synthetic-only, synthetic statistics at train and test", seed, result.test.top1)
        add(
            "own_statistics",
            "synthetic-only, synthetic statistics at train, real at test",
            seed,
            evaluate(model.to(device), test, study.real_statistics, training).top1,
        )
    return pd.DataFrame(rows)


def summarize_variants(per_seed: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, float]]]:
    """Mean ± 95% CI over seeds per variant, with its comparisons paired by seed (the mean of per-seed differences
    in points ± 95% CI, with its p-value): ``gap_pp``, below the real-only student, and ``change_vs_synthetic_pp``,
    gained over the baseline synthetic student, Holm-corrected over the variants (one family) in
    ``change_vs_synthetic_pp_p_holm``; the per-seed rows with their ``change_pp``; and the metrics."""
    # Paired by seed: AdaBN changes the very student of its seed, so its change is measured against that student.
    synthetic = per_seed[per_seed["variant"] == "synthetic"]
    real = per_seed[per_seed["variant"] == "real"]
    per_seed["change_pp"] = 100 * (
        per_seed["test_accuracy"] - per_seed["seed"].map(synthetic.set_index("seed")["test_accuracy"])
    )
    summary, metrics = summarize_runs(
        per_seed.assign(pipeline="normalization"), by=["variant", "description"], label=["variant"]
    )
    comparisons = []
    for variant in summary["variant"]:
        students = per_seed[per_seed["variant"] == variant]
        columns = paired_columns("gap_pp", paired_difference(*by_seed(real, students)))
        if variant != "real":  # its change is its gap
            columns |= paired_columns("change_vs_synthetic_pp", paired_difference(*by_seed(students, synthetic)))
        comparisons.append(columns)
    summary = with_holm(
        pd.concat([summary, pd.DataFrame(comparisons, index=summary.index)], axis=1), "change_vs_synthetic_pp"
    )
    for row in summary.itertuples():
        metrics |= as_metrics(
            {f"{row.variant}.gap_pp": row.gap_pp, f"{row.variant}.change_vs_synthetic_pp": row.change_vs_synthetic_pp}
        )
    return summary, per_seed, metrics
