"""Data efficiency's nodes: each arm's learning rate chosen, the from-scratch, fine-tuned and re-initialised
students, and the trade-off summary."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import plotly.graph_objects as go

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.experiments import data_efficiency
from mind_the_gap.experiments.data_efficiency import DataEfficiencyConfig
from mind_the_gap.experiments.study import Study, as_metrics, train_cell
from mind_the_gap.results.data_efficiency import data_efficiency_chart
from mind_the_gap.results.figures import matplotlib_figure
from mind_the_gap.results.interactive import plotly_figure


def train_learning_rate_candidates(
    parent_runs: pd.DataFrame, real_train: ImageSet, study: Study, config: DataEfficiencyConfig
) -> pd.DataFrame:
    """Every arm's students at each learning rate of the grid, at the choice's fraction: the choice's runs."""
    plan = data_efficiency.planner(real_train, "real_train", study.training, config, study.student, parent_runs)
    jobs = data_efficiency.plan_learning_rates(plan)
    return train_cell(study, "data_efficiency", "learning_rate", jobs, {"real_train": real_train})


def train_from_scratch(
    real_train: ImageSet, study: Study, config: DataEfficiencyConfig, learning_rate_runs: pd.DataFrame
) -> pd.DataFrame:
    """A fresh student on each real subset alone, at its chosen learning rate, and the convergence check's."""
    plan = data_efficiency.planner(real_train, "real_train", study.training, config)
    jobs = data_efficiency.plan_arms(plan, data_efficiency.chosen_learning_rates(learning_rate_runs))
    return train_cell(study, "data_efficiency", "scratch", jobs, {"real_train": real_train})


def train_from_synthetic(
    parent_runs: pd.DataFrame,
    real_train: ImageSet,
    study: Study,
    config: DataEfficiencyConfig,
    learning_rate_runs: pd.DataFrame,
    reinit: bool,
) -> pd.DataFrame:
    """The synthetic students' last units fine-tuned (or, ``reinit``, trained from fresh weights) on each real
    subset, the lower units frozen, each arm at its chosen learning rate, and the convergence check's."""
    plan = data_efficiency.planner(real_train, "real_train", study.training, config, study.student, parent_runs)
    jobs = data_efficiency.plan_arms(plan, data_efficiency.chosen_learning_rates(learning_rate_runs), reinit)
    return train_cell(study, "data_efficiency", "reinit" if reinit else "finetune", jobs, {"real_train": real_train})


def summarize_data_efficiency(
    real_runs: pd.DataFrame,
    synthetic_runs: pd.DataFrame,
    scratch_runs: pd.DataFrame,
    finetune_runs: pd.DataFrame,
    reinit_runs: pd.DataFrame,
    learning_rate_runs: pd.DataFrame,
    config: DataEfficiencyConfig,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, float]], plt.Figure, go.Figure]:
    """The trade-off table, the learning-rate choice and the figure (as a PNG's figure and an interactive one):
    accuracy against real images."""
    baselines = pd.concat([real_runs, synthetic_runs], ignore_index=True)
    runs = pd.concat([scratch_runs, finetune_runs, reinit_runs], ignore_index=True)
    summary, reference, metrics = data_efficiency.summarize(baselines, runs, config)
    chosen = data_efficiency.chosen_learning_rates(learning_rate_runs)
    metrics |= as_metrics({f"{arm}.lr_factor": factor for arm, factor in chosen.items()})
    chart = data_efficiency_chart(summary, reference)
    choice = data_efficiency.learning_rate_table(learning_rate_runs)
    return summary, choice, metrics, matplotlib_figure(chart), plotly_figure(chart)
