"""Data efficiency: how little real data the last units need.

Synthetic-trained baseline students get their last ``m`` units fine-tuned on a fraction of the real pool, the
lower units frozen (``all``: every unit fine-tuned); the baseline is a student trained from scratch on the same
fraction alone, the reference the real-only students on everything. Subsets are stratified, nested and drawn
from the seed. Every student trains at least ``min_steps`` optimizer steps (by default as many as a student on
the whole real pool), so small subsets are not flattered by a handful of steps; whether that budget sufficed is
checked by training the from-scratch students of some seeds again with a larger one.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal

import pandas as pd
import torch
from pydantic import Field, model_validator

from mind_the_gap.analysis.statistics import by_seed, paired_columns, paired_difference, with_holm
from mind_the_gap.config import Config
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.data.prepare import nested_subset_indices
from mind_the_gap.experiments.study import SeedsConfig, StudentJob, as_metrics, parent_keys, summarize_runs, views
from mind_the_gap.models.architectures import StudentConfig, student_unit_names
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.engine import planned_steps
from mind_the_gap.training.transfer import Transfer, TransferConfig

LastUnits = int | Literal["all"]


class ConvergenceCheck(Config):
    """From-scratch students of some seeds trained again with ``budget_factor`` times the steps: if they do no
    better (by less than ``tolerance_pp``), the step budget sufficed. (A validation curve cannot tell: under a
    cosine schedule accuracy always rises as the learning rate falls to zero.)"""

    budget_factor: float = Field(2.0, gt=1)
    seeds: list[int] = Field([0], min_length=1, description="each costs budget_factor students per fraction")
    tolerance_pp: float = Field(1.0, ge=0)


class DataEfficiencyConfig(SeedsConfig):
    fractions: list[float] = Field([1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125], min_length=1)
    last_units: list[LastUnits] = Field([1, 2, 3, "all"], min_length=1, description="units fine-tuned; all: every")
    reinit: bool = Field(False, description="the fine-tuned units start fresh (true) or from the synthetic student")
    lr_scale: float = Field(0.1, gt=0, le=1, description="learning rate of units starting from the synthetic student")
    min_steps: int | Literal["full"] = Field("full", description="optimizer steps at least; full: those of the pool")
    convergence_check: ConvergenceCheck | None = ConvergenceCheck()

    @model_validator(mode="after")
    def _check_seeds_are_seeds(self) -> DataEfficiencyConfig:
        extra = set(self.convergence_check.seeds) - set(self.seeds) if self.convergence_check else set()
        if extra:
            raise ValueError(
                f"data_efficiency.convergence_check.seeds {sorted(extra)} are not in data_efficiency.seeds"
            )
        return self


def fraction_label(fraction: float) -> str:
    return str(Fraction(fraction).limit_denominator(4096))


def _recipe(
    training: TrainConfig, pool_size: int, config: DataEfficiencyConfig, budget_factor: float = 1.0
) -> TrainConfig:
    budget = planned_steps(pool_size, training) if config.min_steps == "full" else config.min_steps
    return training.model_copy(update={"min_steps": round(budget * budget_factor)})


def _subsets(pool: ImageSet, config: DataEfficiencyConfig) -> dict[int, dict[float, torch.Tensor]]:
    """Per seed, the indices of each fraction's subset of the pool."""
    return {
        seed: nested_subset_indices(
            pool.labels, pool.num_classes, config.fractions, torch.Generator().manual_seed(seed)
        )
        for seed in config.seeds
    }


def _columns(strategy: str, last_units: LastUnits | None, fraction: float, size: int) -> dict[str, object]:
    return {
        "strategy": strategy,
        "last_units": "" if last_units is None else str(last_units),
        "fraction": fraction,
        "fraction_label": fraction_label(fraction),
        "real_images": size,
    }


def _more_steps(factor: float) -> str:
    return f"scratch {factor:g}x steps"


def plan_scratch(
    pool: ImageSet, pool_name: str, training: TrainConfig, config: DataEfficiencyConfig
) -> list[StudentJob]:
    """The baseline: a fresh student on each subset of the real pool (stored as ``pool_name``) alone (the whole
    pool is the real-only baseline), and the convergence check's students with a larger step budget."""
    check = config.convergence_check
    plans = [("scratch", 1.0, config.seeds)]  # strategy, step budget factor, seeds
    if check is not None:
        plans.append((_more_steps(check.budget_factor), check.budget_factor, check.seeds))
    subsets = _subsets(pool, config)
    return [
        StudentJob(
            f"data_efficiency/{strategy} on {fraction_label(f)} real/seed{seed}",
            seed,
            views(pool_name, index),
            columns=_columns(strategy, None, f, len(index)),
            training=_recipe(training, len(pool), config, factor),
        )
        for strategy, factor, seeds in plans
        for seed in seeds
        for f, index in subsets[seed].items()
    ]


def plan_finetune(
    parent_runs: pd.DataFrame,
    pool: ImageSet,
    pool_name: str,
    student: StudentConfig,
    training: TrainConfig,
    config: DataEfficiencyConfig,
) -> list[StudentJob]:
    """The synthetic students (in ``parent_runs``) with their last units fine-tuned on each subset of the real pool,
    the lower units frozen."""
    recipe = _recipe(training, len(pool), config)
    parents = parent_keys(parent_runs, config.seeds, "synthetic", "data_efficiency")
    num_units = len(student_unit_names(student))
    bad = [m for m in config.last_units if m != "all" and not 0 < m < num_units]
    if bad:
        raise ValueError(
            f"data_efficiency.last_units {bad}: the student has {num_units} units, so use 1-{num_units - 1} or all"
        )
    jobs = []
    for last in config.last_units:
        if last == "all":  # every unit kept from the synthetic student, and fine-tuned
            kept, lower, strategy = f"0-{num_units - 1}", "finetune", "all"
        else:
            kept, lower, strategy = f"0-{num_units - last - 1}", "frozen", f"last {last}"
        transfer = TransferConfig(lower=lower, lr_scale=config.lr_scale, reinit=config.reinit)
        for seed, subsets in _subsets(pool, config).items():
            for f, index in subsets.items():
                name = f"data_efficiency/{strategy} units on {fraction_label(f)} real/seed{seed}"
                parent = Transfer(parents[seed], kept, transfer)
                columns = _columns(strategy, last, f, len(index))
                jobs.append(StudentJob(name, seed, views(pool_name, index), parent, columns, recipe))
    return jobs


def summarize(
    baselines: pd.DataFrame, runs: pd.DataFrame, config: DataEfficiencyConfig
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, float]]]:
    """Mean ± 95% CI per strategy and fraction, its comparisons, and whether the students converged; and the
    baselines' summary (the chart's reference levels).

    Comparisons are paired by seed (a seed's students share its subsets): ``below_real_pp``, the points below the
    real-only student of the same seed on everything; ``vs_scratch_pp``, the points a strategy gains over the
    from-scratch student of the same seed and subset, each ± 95% CI with its p-value, and ``vs_scratch_pp_p_holm``
    over every strategy and fraction of the table (one family).
    """
    baselines = baselines[baselines["seed"].isin(set(config.seeds))]
    reference, _ = summarize_runs(baselines, by=["cell"])
    reference = reference.set_index("cell")
    summary, metrics = summarize_runs(
        runs, by=["strategy", "fraction", "fraction_label", "real_images"], label=["strategy", "fraction_label"]
    )
    real = baselines[baselines["cell"] == "real"]
    comparisons = []
    for row in summary.itertuples():
        students = runs[(runs["strategy"] == row.strategy) & (runs["fraction"] == row.fraction)]
        scratch = runs[(runs["strategy"] == "scratch") & (runs["fraction"] == row.fraction)]
        below = paired_difference(*by_seed(real, students)) if len(real) else None
        columns = paired_columns("below_real_pp", below) if below else {"below_real_pp": math.nan}
        if not row.strategy.startswith("scratch"):  # the from-scratch students and their convergence check
            columns |= paired_columns("vs_scratch_pp", paired_difference(*by_seed(students, scratch)))
        comparisons.append(columns)
    summary = pd.concat([summary, pd.DataFrame(comparisons, index=summary.index)], axis=1)
    if "vs_scratch_pp_p" in summary:
        summary = with_holm(summary, "vs_scratch_pp")
    for name in ("below_real_pp", "vs_scratch_pp"):
        if name in summary:
            metrics |= as_metrics(
                {f"{row.strategy}.{row.fraction_label}.{name}": getattr(row, name) for row in summary.itertuples()}
            )
    check = config.convergence_check
    if check is not None:
        summary = summary.merge(_convergence(runs, check), on=["strategy", "fraction"], how="left")
    return summary, reference, metrics


def _convergence(runs: pd.DataFrame, check: ConvergenceCheck) -> pd.DataFrame:
    """Per fraction, how many points the from-scratch students gained with the larger budget (same seeds, same
    subsets), and whether that stays below the tolerance."""
    accuracy = runs.pivot_table(index=["fraction", "seed"], columns="strategy", values="test_accuracy")
    longer = accuracy[_more_steps(check.budget_factor)]
    gain = (100 * (longer - accuracy["scratch"])).dropna().groupby("fraction").mean()
    return pd.DataFrame(
        {
            "strategy": "scratch",
            "fraction": gain.index,
            "more_steps_gain_pp": gain.to_numpy(),
            "converged": gain.to_numpy() < check.tolerance_pp,
        }
    )
