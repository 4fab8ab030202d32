"""Baselines: students trained on one source each, the gap between them, and how recognisable the synthetic
training images are to a real-trained student."""

from __future__ import annotations

import pandas as pd
from pydantic import Field

from mind_the_gap.analysis.statistics import by_seed, paired_columns, paired_difference, with_holm
from mind_the_gap.experiments.study import (
    SeedsConfig,
    StudentJob,
    Study,
    as_metrics,
    parent_keys,
    summarize_runs,
    views,
)
from mind_the_gap.training.engine import Evaluation, evaluate


class BaselinesConfig(SeedsConfig):
    samples_per_class: int = Field(10, ge=1, description="synthetic training images per class in the sample grid")


def plan(cell: str, training_set: str, config: BaselinesConfig) -> list[StudentJob]:
    """One student per seed on the stored set ``training_set``."""
    return [StudentJob(f"baselines/{cell}/seed{seed}", seed, views(training_set)) for seed in config.seeds]


def summarize(runs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Mean ± 95% CI per cell; ``gap_pp``: how many points of test accuracy a cell loses to ``real``, paired by seed
    (the mean of the per-seed differences, with ``gap_pp_ci95``, ``gap_pp_n``, ``gap_pp_p`` and, over the cells
    compared with ``real``, ``gap_pp_p_holm``)."""
    summary, metrics = summarize_runs(runs, by=["pipeline", "cell"])
    real = runs[runs["cell"] == "real"]
    if len(real):
        gaps = pd.DataFrame(
            [
                {
                    "cell": cell,
                    **paired_columns("gap_pp", paired_difference(*by_seed(real, runs[runs["cell"] == cell]))),
                }
                for cell in summary["cell"]
                if cell != "real"
            ],
            columns=["cell", "gap_pp", "gap_pp_ci95", "gap_pp_n", "gap_pp_p"],
        )
        summary = summary.merge(with_holm(gaps, "gap_pp"), on="cell", how="left")
        summary.loc[summary["cell"] == "real", "gap_pp"] = 0.0
        compared = summary[summary["cell"] != "real"]
        metrics |= as_metrics(
            {
                f"{row.cell}.{name}": getattr(row, name)
                for row in compared.itertuples()
                for name in ("gap_pp", "gap_pp_ci95")
            }
        )
    return summary, metrics


def recognisability(real_runs: pd.DataFrame, synthetic_train, study: Study, config: BaselinesConfig) -> Evaluation:
    """The first seed's real-trained student's evaluation of the synthetic training set: how well it carries its
    labels, whatever backend made it."""
    seed = min(config.seeds)
    key = parent_keys(real_runs, [seed], "real", "measuring recognisability")[seed]
    result = study.students.load_result(key)
    if result is None:
        raise ValueError(
            f"the real baseline student {key} is not in {study.store}: run `kedro run --pipeline baselines`"
        )
    judge = study.students.load_model(key, study.student, synthetic_train)
    return evaluate(judge, synthetic_train, result.normalization, study.training)
