"""Stitching's nodes: the stitched students of an arrangement, and the summary with its figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import plotly.graph_objects as go

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.experiments import stitching
from mind_the_gap.experiments.stitching import StitchingConfig
from mind_the_gap.experiments.study import Study, train_cell
from mind_the_gap.results.figures import matplotlib_figure
from mind_the_gap.results.interactive import plotly_figure
from mind_the_gap.results.stitching import stitching_chart


def train_stitching(
    arrangement: str,
    real_runs: pd.DataFrame,
    synthetic_runs: pd.DataFrame,
    real_train: ImageSet,
    study: Study,
    config: StitchingConfig,
) -> pd.DataFrame:
    """Every cut and seed of one arrangement: baseline students joined by a stitching layer trained on real images."""
    jobs = stitching.plan(arrangement, real_runs, synthetic_runs, study.student, study.training, config)
    return train_cell(study, "stitching", arrangement, jobs, {stitching.TRAINING_SET: real_train})


def summarize_stitching(
    real_runs: pd.DataFrame, synthetic_runs: pd.DataFrame, *arrangement_runs: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, dict[str, float]], plt.Figure, go.Figure]:
    """Accuracy per cut and arrangement against real-real, paired by seed; as a chart too."""
    summary, metrics = stitching.summarize(pd.concat(arrangement_runs, ignore_index=True))
    chart = stitching_chart(summary, real_runs, synthetic_runs)
    return summary, metrics, matplotlib_figure(chart), plotly_figure(chart)
