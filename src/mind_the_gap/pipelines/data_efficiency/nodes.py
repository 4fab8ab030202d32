"""Data efficiency's nodes: the from-scratch and the fine-tuned students, and the trade-off summary."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import plotly.graph_objects as go

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.experiments import data_efficiency
from mind_the_gap.experiments.data_efficiency import DataEfficiencyConfig
from mind_the_gap.experiments.study import Study, train_cell
from mind_the_gap.results.data_efficiency import data_efficiency_chart
from mind_the_gap.results.figures import matplotlib_figure
from mind_the_gap.results.interactive import plotly_figure


def train_from_scratch(real_train: ImageSet, study: Study, config: DataEfficiencyConfig) -> pd.DataFrame:
    """A fresh student on each real subset alone, and the convergence check's students."""
    jobs = data_efficiency.plan_scratch(real_train, "real_train", study.training, config)
    return train_cell(study, "data_efficiency", "scratch", jobs, {"real_train": real_train})


def train_finetuned(
    parent_runs: pd.DataFrame, real_train: ImageSet, study: Study, config: DataEfficiencyConfig
) -> pd.DataFrame:
    """The synthetic students' last units fine-tuned on each real subset, the lower units frozen."""
    jobs = data_efficiency.plan_finetune(parent_runs, real_train, "real_train", study.student, study.training, config)
    return train_cell(study, "data_efficiency", "finetune", jobs, {"real_train": real_train})


def summarize_data_efficiency(
    real_runs: pd.DataFrame,
    synthetic_runs: pd.DataFrame,
    scratch_runs: pd.DataFrame,
    finetune_runs: pd.DataFrame,
    config: DataEfficiencyConfig,
) -> tuple[pd.DataFrame, dict[str, dict[str, float]], plt.Figure, go.Figure]:
    """The trade-off table and figure (as a PNG's figure and an interactive one): accuracy against real images."""
    baselines = pd.concat([real_runs, synthetic_runs], ignore_index=True)
    runs = pd.concat([scratch_runs, finetune_runs], ignore_index=True)
    summary, reference, metrics = data_efficiency.summarize(baselines, runs, config)
    chart = data_efficiency_chart(summary, reference)
    return summary, metrics, matplotlib_figure(chart), plotly_figure(chart)
