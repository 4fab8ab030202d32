"""Levers' nodes: each lever's students and their headline layer-swap students, and the summary (the pool, the
judge, the filtered sets and the generated sets' students are the library's ``levers`` functions, wired as they
are)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import plotly.graph_objects as go

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.experiments import levers
from mind_the_gap.experiments.levers import LeversConfig
from mind_the_gap.experiments.study import Study
from mind_the_gap.generators.config import GenerationConfig
from mind_the_gap.results.figures import matplotlib_figure
from mind_the_gap.results.interactive import plotly_figure
from mind_the_gap.results.levers import levers_chart


def train_baseline_swaps(
    real_train: ImageSet, synthetic_runs: pd.DataFrame, study: Study, config: LeversConfig, headline_cut: int
) -> pd.DataFrame:
    """The reference lever: the synthetic baselines' headline layer-swap students (the layer swap's own)."""
    return levers.train_baseline_swaps(study, {levers.SETS["real"]: real_train}, synthetic_runs, config, headline_cut)


def train_distillation(
    real_train: ImageSet,
    synthetic_train: ImageSet,
    real_runs: pd.DataFrame,
    study: Study,
    config: LeversConfig,
    headline_cut: int,
) -> pd.DataFrame:
    """Students of the synthetic set taught by the real baselines, then the headline swap from each."""
    sets = {levers.SETS["real"]: real_train, levers.SETS["synthetic"]: synthetic_train}
    jobs = levers.plan_distillation(real_runs, config)
    return levers.train_with_swaps("distillation", study, sets, jobs, config, headline_cut)


def select_more_images(pool: pd.DataFrame, generation: GenerationConfig, config: LeversConfig) -> pd.DataFrame:
    """Each factor's set: the pool's first images of each class."""
    return levers.select_more_images(pool, generation.images_per_class, config)


def summarize_levers(
    real_runs: pd.DataFrame, synthetic_runs: pd.DataFrame, *lever_runs: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, dict[str, float]], plt.Figure, go.Figure]:
    """Each lever's students and their headline swaps against the baselines, paired by seed; as a chart too."""
    summary, metrics = levers.summarize(real_runs, synthetic_runs, list(lever_runs))
    chart = levers_chart(summary, real_runs)
    return summary, metrics, matplotlib_figure(chart), plotly_figure(chart)
