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
from pathlib import Path
from typing import Literal

import matplotlib.pyplot as plt
import pandas as pd
import plotly.graph_objects as go
import torch
from pydantic import Field, model_validator

from mind_the_gap.charts import LineChart, Panel, baseline_levels, table_curve
from mind_the_gap.config import Config
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.data.prepare import nested_subsets
from mind_the_gap.interactive import plotly_figure
from mind_the_gap.models.architectures import StudentConfig, student_unit_names
from mind_the_gap.pipelines.student_runs import SeedsConfig, StudentJob, parent_keys, summarize_runs, train_cell
from mind_the_gap.reporting import matplotlib_figure
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
    training: TrainConfig, pool: ImageSet, config: DataEfficiencyConfig, budget_factor: float = 1.0
) -> TrainConfig:
    budget = planned_steps(len(pool), training) if config.min_steps == "full" else config.min_steps
    return training.model_copy(update={"min_steps": round(budget * budget_factor)})


def _subsets(pool: ImageSet, config: DataEfficiencyConfig) -> dict[int, dict[float, ImageSet]]:
    return {seed: nested_subsets(pool, config.fractions, torch.Generator().manual_seed(seed)) for seed in config.seeds}


def _columns(strategy: str, last_units: LastUnits | None, fraction: float, subset: ImageSet) -> dict[str, object]:
    return {
        "strategy": strategy,
        "last_units": "" if last_units is None else str(last_units),
        "fraction": fraction,
        "fraction_label": fraction_label(fraction),
        "real_images": len(subset),
    }


def train_from_scratch(
    real_train: ImageSet,
    val: ImageSet,
    test: ImageSet,
    store: Path,
    real_statistics: dict[str, list[float]],
    student: StudentConfig,
    training: TrainConfig,
    data_efficiency: DataEfficiencyConfig,
) -> pd.DataFrame:
    """The baseline: a fresh student on each real subset alone (the whole pool is the real-only baseline), and
    the convergence check's students with a larger step budget."""
    check = data_efficiency.convergence_check
    plans = [("scratch", 1.0, data_efficiency.seeds)]  # strategy, step budget factor, seeds
    if check is not None:
        plans.append((_more_steps(check.budget_factor), check.budget_factor, check.seeds))
    subsets = _subsets(real_train, data_efficiency)
    jobs = [
        StudentJob(
            f"data_efficiency/{strategy} on {fraction_label(f)} real/seed{seed}",
            seed,
            subset,
            columns=_columns(strategy, None, f, subset),
            training=_recipe(training, real_train, data_efficiency, factor),
        )
        for strategy, factor, seeds in plans
        for seed in seeds
        for f, subset in subsets[seed].items()
    ]
    return train_cell("data_efficiency", "scratch", jobs, val, test, store, student, training, real_statistics)


def _more_steps(factor: float) -> str:
    return f"scratch {factor:g}x steps"


def train_finetuned(
    parent_runs: pd.DataFrame,
    real_train: ImageSet,
    val: ImageSet,
    test: ImageSet,
    store: Path,
    real_statistics: dict[str, list[float]],
    student: StudentConfig,
    training: TrainConfig,
    data_efficiency: DataEfficiencyConfig,
) -> pd.DataFrame:
    """The synthetic students' last units fine-tuned on each real subset, the lower units frozen."""
    recipe = _recipe(training, real_train, data_efficiency)
    parents = parent_keys(parent_runs, data_efficiency.seeds, "synthetic", "data_efficiency")
    num_units = len(student_unit_names(student))
    bad = [m for m in data_efficiency.last_units if m != "all" and not 0 < m < num_units]
    if bad:
        raise ValueError(
            f"data_efficiency.last_units {bad}: the student has {num_units} units, so use 1-{num_units - 1} or all"
        )
    jobs = []
    for last in data_efficiency.last_units:
        if last == "all":  # every unit kept from the synthetic student, and fine-tuned
            kept, lower, strategy = f"0-{num_units - 1}", "finetune", "all"
        else:
            kept, lower, strategy = f"0-{num_units - last - 1}", "frozen", f"last {last}"
        transfer = TransferConfig(lower=lower, lr_scale=data_efficiency.lr_scale, reinit=data_efficiency.reinit)
        for seed, subsets in _subsets(real_train, data_efficiency).items():
            for f, subset in subsets.items():
                name = f"data_efficiency/{strategy} units on {fraction_label(f)} real/seed{seed}"
                jobs.append(
                    StudentJob(
                        name,
                        seed,
                        subset,
                        Transfer(parents[seed], kept, transfer),
                        _columns(strategy, last, f, subset),
                        recipe,
                    )
                )
    return train_cell("data_efficiency", "finetune", jobs, val, test, store, student, training, real_statistics)


def summarize_data_efficiency(
    real_runs: pd.DataFrame,
    synthetic_runs: pd.DataFrame,
    scratch_runs: pd.DataFrame,
    finetune_runs: pd.DataFrame,
    data_efficiency: DataEfficiencyConfig,
) -> tuple[pd.DataFrame, dict[str, dict[str, float]], plt.Figure, go.Figure]:
    """Mean ± 95% CI per strategy and fraction, its distance to the real-only students on everything, whether
    the students converged, and the trade-off figure (as a PNG's figure and an interactive one): accuracy against
    real images used."""
    runs = pd.concat([scratch_runs, finetune_runs], ignore_index=True)
    seeds = set(data_efficiency.seeds)
    baselines = pd.concat([real_runs, synthetic_runs], ignore_index=True)
    reference, _ = summarize_runs(baselines[baselines["seed"].isin(seeds)], by=["cell"])
    reference = reference.set_index("cell")
    summary, metrics = summarize_runs(
        runs, by=["strategy", "fraction", "fraction_label", "real_images"], label=["strategy", "fraction_label"]
    )
    real_mean = reference["test_accuracy_mean"].get("real", math.nan)
    summary["below_real_pp"] = 100 * (real_mean - summary["test_accuracy_mean"])
    for row in summary.itertuples():
        metrics[f"{row.strategy}.{row.fraction_label}.below_real_pp"] = {"value": float(row.below_real_pp), "step": 0}
    check = data_efficiency.convergence_check
    if check is not None:
        summary = summary.merge(_convergence(runs, check), on=["strategy", "fraction"], how="left")
    chart = data_efficiency_chart(summary, reference)
    return summary, metrics, matplotlib_figure(chart), plotly_figure(chart)


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


def data_efficiency_chart(summary: pd.DataFrame, reference: pd.DataFrame) -> LineChart:
    """Test accuracy against the number of real images used, one line per strategy with its 95% CI band."""
    curves = []
    for i, (strategy, group) in enumerate(summary.groupby("strategy", sort=False)):
        scratch = strategy.startswith("scratch")
        colour, style = ("black", "-" if strategy == "scratch" else ":") if scratch else (f"C{i + 1}", "-")
        label = f"synthetic student, {strategy} units fine-tuned"
        if scratch:
            label = "from scratch on the subset" if strategy == "scratch" else f"{strategy} (convergence check)"
        points = group.sort_values("real_images")
        curves.append(table_curve(points, "real_images", "test_accuracy", label, colour, style, band=True))
    levels = baseline_levels(
        reference, {"real": "real-only, every real image", "synthetic": "synthetic-only, no real image"}
    )
    return LineChart(
        "Data efficiency: fine-tuning the last units on a little real data",
        "real training images used",
        [Panel("test accuracy on real images", curves, levels)],
        log2_x=True,
        legend_at="lower right",
        size=(7.5, 4.8),
    )
