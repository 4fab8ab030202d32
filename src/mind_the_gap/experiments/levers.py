"""Levers: what users of synthetic data try next to close the gap, each asked the layer swap's question.

A lever changes how the synthetic students learn; its students train on the synthetic set over the seeds. From
each of them, the layer swap's headline student (units 0..cut-1 kept from it and frozen, the rest retrained on real
images, as ``layer_swap``'s headline cell) asks: with the lever applied, how much of the gap left does retraining
the last units on real data still recover? The synthetic baselines are the reference lever (``none``), with the
layer swap's own headline students (the same students: a run of the layer swap trains them once).

- distillation: the synthetic images labelled by a teacher instead of their prompt's class: the real-trained
  baseline student of the same seed, its predictions on each training batch softened at a temperature (Hinton et
  al., 2015, as DM-KD, He et al. 2023, distils from synthetic images). If it closes most of the gap, what the last
  units lack is the decision boundary real labels give, not the features.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import pandas as pd
from pydantic import Field, PositiveFloat

from mind_the_gap.analysis.statistics import (
    by_seed,
    gap_recovered,
    paired_columns,
    paired_difference,
    ratio_columns,
    with_holm,
)
from mind_the_gap.config import Config
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.experiments import layer_swap
from mind_the_gap.experiments.ablations import SETS
from mind_the_gap.experiments.study import (
    SeedsConfig,
    StudentJob,
    Study,
    as_metrics,
    parent_keys,
    summarize_runs,
    train_cell,
    views,
)
from mind_the_gap.models.architectures import StudentConfig
from mind_the_gap.training.distillation import Teacher
from mind_the_gap.training.transfer import TransferConfig

BASELINE = "none"  # the synthetic baselines, the lever every other is compared with
SWAPPED = "last units real"  # the trained_on of a lever's headline layer-swap students


class DistillationLever(Config):
    temperatures: list[PositiveFloat] = Field(
        [4.0], min_length=1, description="softmax temperatures of the teacher's and the student's predictions"
    )


class LeversConfig(SeedsConfig, TransferConfig):
    """The seeds, each lever's variants, and how the headline layer-swap students keep units (as the layer swap)."""

    distillation: DistillationLever = DistillationLever()


def _job(lever: str, variant: str, seed: int, **fields: Any) -> StudentJob:
    columns = {"lever": lever, "variant": variant, "trained_on": "synthetic"} | fields.pop("columns", {})
    return StudentJob(
        f"levers/{lever}/{variant}/synthetic/seed{seed}", seed, views(SETS["synthetic"]), **fields, columns=columns
    )


def plan_distillation(real_runs: pd.DataFrame, config: LeversConfig) -> list[StudentJob]:
    """Per temperature and seed, a student of the synthetic set taught by the real baseline student of its seed."""
    teachers = parent_keys(real_runs, config.seeds, "real", "levers.distillation")
    return [
        _job(
            "distillation",
            f"temperature {temperature:g}",
            seed,
            teacher=Teacher(teachers[seed], temperature),
            columns={"teacher": teachers[seed]},
        )
        for temperature in config.distillation.temperatures
        for seed in config.seeds
    ]


PLANS: dict[str, Callable[[pd.DataFrame, LeversConfig], list[StudentJob]]] = {"distillation": plan_distillation}


def plan_swaps(
    lever: str, runs: pd.DataFrame, student: StudentConfig, config: LeversConfig, headline_cut: int
) -> list[StudentJob]:
    """From each student of ``runs`` (a lever's, by variant), the layer swap's headline student: units
    0..``headline_cut``-1 kept from it, the rest retrained on the real training pool."""
    transfer = config.model_dump(include=set(TransferConfig.model_fields))
    swap = layer_swap.LayerSwapConfig(seeds=config.seeds, cuts=[headline_cut], headline_cut=headline_cut, **transfer)
    jobs = []
    for variant, students in runs.groupby("variant", sort=False):
        for job in layer_swap.plan("prefix", "synthetic", students, SETS["real"], student, swap):
            columns = {"lever": lever, "variant": variant, "trained_on": SWAPPED, "kept": job.columns["kept"]}
            jobs.append(replace(job, name=f"levers/{lever}/{variant}/{SWAPPED}/seed{job.seed}", columns=columns))
    return jobs


def train_lever(
    lever: str,
    study: Study,
    sets: Mapping[str, ImageSet],
    real_runs: pd.DataFrame,
    synthetic_runs: pd.DataFrame,
    config: LeversConfig,
    headline_cut: int,
) -> pd.DataFrame:
    """A lever's students, then the headline layer-swap student from each; for ``none``, the swaps from the
    synthetic baselines alone."""
    if lever == BASELINE:
        runs = synthetic_runs.assign(lever=BASELINE, variant="synthetic baseline", trained_on="synthetic")
        return train_cell(study, "levers", lever, plan_swaps(lever, runs, study.student, config, headline_cut), sets)
    runs = train_cell(study, "levers", lever, PLANS[lever](real_runs, config), sets)
    swaps = plan_swaps(lever, runs, study.student, config, headline_cut)
    return pd.concat([runs, train_cell(study, "levers", lever, swaps, sets)], ignore_index=True)


def summarize(
    real_runs: pd.DataFrame, synthetic_runs: pd.DataFrame, lever_runs: list[pd.DataFrame]
) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """One row per lever and variant (the synthetic baselines first, as lever ``none``): its synthetic students'
    accuracy and their headline layer-swap students', mean ± 95% CI over seeds, and, paired by seed:

    - ``gap_pp``: points below the real baseline students;
    - ``vs_baseline_pp``: points gained over the synthetic baseline students, Holm-corrected over the levers' rows;
    - ``remaining_recovered``: the share of the gap left after the lever that its headline layer-swap students
      recover, 0 at the lever's students, 1 at the real baselines, with Fieller's 95% interval.
    """
    runs = pd.concat(lever_runs, ignore_index=True)
    baseline = synthetic_runs.assign(lever=BASELINE, variant="synthetic baseline", trained_on="synthetic")
    students = pd.concat([baseline, runs[runs["trained_on"] == "synthetic"]], ignore_index=True)
    swaps = runs[runs["trained_on"] == SWAPPED]
    summary, metrics = summarize_runs(students.assign(pipeline="levers"), by=["lever", "variant"])
    rows = []
    for lever, variant in summary[["lever", "variant"]].itertuples(index=False):
        own = students[(students["lever"] == lever) & (students["variant"] == variant)]
        swapped = swaps[(swaps["lever"] == lever) & (swaps["variant"] == variant)]
        row = paired_columns("gap_pp", paired_difference(*by_seed(real_runs, own)))
        if lever != BASELINE:
            row |= paired_columns("vs_baseline_pp", paired_difference(*by_seed(own, synthetic_runs)))
        if len(swapped):
            row |= _swap_columns(swapped, own, real_runs)
        rows.append(row)
    summary = pd.concat([summary, pd.DataFrame(rows, index=summary.index)], axis=1)
    if "vs_baseline_pp_p" in summary:
        summary = with_holm(summary, "vs_baseline_pp")
    values = {
        f"{row.lever}.{row.variant}.{name}": getattr(row, name, None)
        for row in summary.itertuples()
        for name in ("gap_pp", "vs_baseline_pp", "remaining_recovered")
    }
    return summary, metrics | as_metrics(values)


def _swap_columns(swapped: pd.DataFrame, own: pd.DataFrame, real_runs: pd.DataFrame) -> dict[str, Any]:
    mean, ci = summarize_runs(swapped.assign(pipeline="levers"), by=["lever"])[0][
        ["test_accuracy_mean", "test_accuracy_ci95"]
    ].iloc[0]
    return {
        "swap_kept": swapped["kept"].iloc[0],
        "swap_accuracy_mean": mean,
        "swap_accuracy_ci95": ci,
        **ratio_columns("remaining_recovered", gap_recovered(*by_seed(swapped, own, real_runs))),
    }
