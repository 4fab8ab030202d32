"""Normalization's nodes: input statistics, the per-unit profile, the synthetic-statistics students, and the
normalisation variants compared."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import plotly.graph_objects as go

from mind_the_gap.analysis import input_statistics, profile
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.experiments import normalization
from mind_the_gap.experiments.normalization import NormalizationConfig
from mind_the_gap.experiments.study import Study, train_cell
from mind_the_gap.results.figures import matplotlib_figure
from mind_the_gap.results.interactive import plotly_figure
from mind_the_gap.results.normalization import histogram_figure, profile_chart

Metrics = dict[str, dict[str, float]]


def measure_input_statistics(
    real_train: ImageSet, synthetic_train: ImageSet
) -> tuple[pd.DataFrame, plt.Figure, Metrics]:
    """Per class (and ``all``) and channel: both sources' pixel moments and their Wasserstein distance; the
    histograms drawn."""
    histograms = input_statistics.pixel_histograms(real_train, synthetic_train)
    table = input_statistics.input_statistics(histograms)
    return table, histogram_figure(histograms), normalization.input_metrics(table)


def profile_units(
    real_runs: pd.DataFrame,
    synthetic_runs: pd.DataFrame,
    real_train: ImageSet,
    synthetic_train: ImageSet,
    study: Study,
    analyses: Path,
    config: NormalizationConfig,
) -> tuple[pd.DataFrame, plt.Figure, go.Figure, Metrics]:
    """The baseline students' per-unit profile (cached in ``analyses``), drawn as a PNG's figure and an
    interactive one."""
    table = profile.unit_profile(real_runs, synthetic_runs, real_train, synthetic_train, study, config, analyses)
    chart = profile_chart(table)
    return table, matplotlib_figure(chart), plotly_figure(chart), normalization.profile_metrics(table)


def train_with_synthetic_statistics(
    synthetic_train: ImageSet, study: Study, config: NormalizationConfig
) -> pd.DataFrame:
    """Synthetic-only students normalised with the synthetic set's own statistics (at train and test time)."""
    jobs = normalization.plan(config, study.training)
    return train_cell(study, "normalization", "synthetic_statistics", jobs, {"synthetic_train": synthetic_train})


def compare_normalizations(
    real_runs: pd.DataFrame,
    synthetic_runs: pd.DataFrame,
    synthetic_statistics_runs: pd.DataFrame,
    real_train: ImageSet,
    study: Study,
    analyses: Path,
    config: NormalizationConfig,
) -> tuple[pd.DataFrame, pd.DataFrame, Metrics]:
    """Test accuracy on real images of each normalisation variant and AdaBN, mean ± 95% CI over seeds, with each
    one's gap to the real-only students; and the per-seed rows (cached in ``analyses``)."""
    per_seed = normalization.compare_variants(
        real_runs, synthetic_runs, synthetic_statistics_runs, real_train, study, config, analyses
    )
    return normalization.summarize_variants(per_seed)
