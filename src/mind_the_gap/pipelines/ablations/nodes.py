"""Ablations' nodes: each factor's generated sets and students, the texture-vs-shape views, the diversity of the
sets, and the summary with its figure (the factors: ``mind_the_gap.experiments.ablations``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import plotly.graph_objects as go

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.experiments import ablations
from mind_the_gap.experiments.ablations import AblationsConfig
from mind_the_gap.experiments.study import Study, train_cell
from mind_the_gap.generators.config import GenerationConfig
from mind_the_gap.results.ablations import ablations_chart
from mind_the_gap.results.figures import matplotlib_figure
from mind_the_gap.results.interactive import plotly_figure
from mind_the_gap.results.per_class import per_class_chart


def train_on_pools(
    factor: str, real_train: ImageSet, synthetic_train: ImageSet, study: Study, config: AblationsConfig
) -> pd.DataFrame:
    """A factor's students on the real pool and the synthetic set: with no augmentation or a strong policy, with
    local pixel shuffles, or on the two mixed."""
    sets = ablations.pools(real_train, synthetic_train)
    return train_cell(study, "ablations", factor, ablations.plan_on_pools(factor, sets, study.training, config), sets)


def generate_variant_sets(
    factor: str,
    generation: GenerationConfig,
    generator_model: dict[str, Any],
    real_train: ImageSet,
    output_dir: Path,
    config: AblationsConfig,
) -> pd.DataFrame:
    """One synthetic set per variant of the factor (img2img strengths and Stable unCLIP for the oracle, guidance
    scales for the diversity): one manifest."""
    generations = ablations.variant_generations(factor, generation, config)
    return ablations.generate_variants(generations, generator_model, real_train, output_dir)


def train_oracle(
    manifest: pd.DataFrame,
    output_dir: Path,
    generation: GenerationConfig,
    real_train: ImageSet,
    study: Study,
    config: AblationsConfig,
) -> pd.DataFrame:
    """Synthetic-only students on each oracle set."""
    variants = ablations.load_variants(manifest, output_dir, real_train, generation)
    return train_cell(study, "ablations", "oracle", ablations.plan_oracle(variants, config), variants)


def train_diversity(
    manifest: pd.DataFrame,
    output_dir: Path,
    generation: GenerationConfig,
    real_train: ImageSet,
    study: Study,
    config: AblationsConfig,
) -> pd.DataFrame:
    """Per guidance scale: synthetic-only students, then from each the two key layer-swap students, the first or
    the last units trained on real images and the rest kept from the synthetic student."""
    variants = ablations.load_variants(manifest, output_dir, real_train, generation)
    return ablations.train_diversity(variants, real_train, study, config)


def measure_per_class_gaps(
    real_runs: pd.DataFrame, synthetic_runs: pd.DataFrame, judged: pd.DataFrame, study: Study
) -> tuple[pd.DataFrame, pd.DataFrame, plt.Figure, go.Figure]:
    """Each class's gap beside the judges' measures of its synthetic images, their rank correlations, the chart."""
    table, correlations = ablations.measure_per_class_gaps(real_runs, synthetic_runs, judged, study)
    chart = per_class_chart(table)
    return table, correlations, matplotlib_figure(chart), plotly_figure(chart)


def summarize_ablations(
    real_runs: pd.DataFrame, synthetic_runs: pd.DataFrame, views: pd.DataFrame, *factor_runs: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, dict[str, float]], plt.Figure, go.Figure]:
    """One row per factor, variant and training data: test accuracy mean ± 95% CI over seeds, the gap to the
    real-only baselines and between the sources; the accuracies drawn as a PNG's figure and an interactive one."""
    summary, metrics = ablations.summarize(real_runs, synthetic_runs, views, factor_runs)
    chart = ablations_chart(summary)
    return summary, metrics, matplotlib_figure(chart), plotly_figure(chart)
