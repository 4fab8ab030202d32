"""Levers' nodes: each lever's students and their headline layer-swap students, and the summary."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import plotly.graph_objects as go

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.experiments import levers
from mind_the_gap.experiments.levers import LeversConfig
from mind_the_gap.experiments.study import Study
from mind_the_gap.results.figures import matplotlib_figure
from mind_the_gap.results.interactive import plotly_figure
from mind_the_gap.results.levers import levers_chart


def train_lever(
    lever: str,
    real_train: ImageSet,
    synthetic_train: ImageSet,
    real_runs: pd.DataFrame,
    synthetic_runs: pd.DataFrame,
    study: Study,
    config: LeversConfig,
    headline_cut: int,
) -> pd.DataFrame:
    """A lever's synthetic students, then from each the layer swap's headline student (the rest on real images)."""
    sets = {levers.SETS["real"]: real_train, levers.SETS["synthetic"]: synthetic_train}
    return levers.train_lever(lever, study, sets, real_runs, synthetic_runs, config, headline_cut)


def summarize_levers(
    real_runs: pd.DataFrame, synthetic_runs: pd.DataFrame, *lever_runs: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, dict[str, float]], plt.Figure, go.Figure]:
    """Each lever's students and their headline swaps against the baselines, paired by seed; as a chart too."""
    summary, metrics = levers.summarize(real_runs, synthetic_runs, list(lever_runs))
    chart = levers_chart(summary, real_runs)
    return summary, metrics, matplotlib_figure(chart), plotly_figure(chart)
