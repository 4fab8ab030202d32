"""Levers' nodes: the pool the generated-set levers draw from, the filtering's judge, each lever's students and
their headline layer-swap students, and the summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import plotly.graph_objects as go

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.experiments import levers
from mind_the_gap.experiments.levers import LeversConfig
from mind_the_gap.experiments.study import Study, train_cell
from mind_the_gap.generators.config import GenerationConfig
from mind_the_gap.generators.synthesis import SetShape, generate_set
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


def generate_pool(
    synthetic_manifest: pd.DataFrame,
    generation: GenerationConfig,
    generator_model: dict[str, Any],
    real_train: ImageSet,
    output_dir: Path,
    config: LeversConfig,
) -> pd.DataFrame:
    """The generation's images topped up to as many a class as more_images and filtering need: its manifest."""
    pool = levers.pool_generation(generation, config)
    manifest, _ = generate_set(pool, generator_model, SetShape.of(real_train), output_dir, real_train)
    return levers.check_pool(manifest, synthetic_manifest)


def select_more_images(pool: pd.DataFrame, generation: GenerationConfig, config: LeversConfig) -> pd.DataFrame:
    """Each factor's set: the pool's first images of each class."""
    return levers.select_more_images(pool, generation.images_per_class, config)


def train_judge(generator_pool: ImageSet, study: Study, config: LeversConfig) -> pd.DataFrame:
    """The filtering's judge, where it is a student of the generator pool (none where CLIP judges)."""
    if not config.filtering.keep_shares or levers.judge_kind(config.filtering) == "clip":
        return pd.DataFrame(columns=["seed", "student_key"])
    if len(generator_pool) == 0:
        raise ValueError(
            "levers.filtering needs a judge: CLIP (no weights for levers.filtering.clip_model_id "
            f"{config.filtering.clip_model_id!r} here) or a student of the generator pool, which is empty: download "
            "the CLIP model, set dataset.split.generator_pool above 0, or set levers.filtering.keep_shares to []"
        )
    return train_cell(study, "levers", "judge", [levers.judge_job(config)], {levers.GENERATOR_POOL: generator_pool})


def select_filtered(
    pool: pd.DataFrame,
    judge_runs: pd.DataFrame,
    output_dir: Path,
    real_train: ImageSet,
    study: Study,
    generation: GenerationConfig,
    config: LeversConfig,
) -> pd.DataFrame:
    """Each keep share's set: the images of each class the judge is most confident about."""
    if not config.filtering.keep_shares:
        return pool.iloc[:0].assign(variant="")
    candidates = levers.filter_candidates(pool, generation.images_per_class, config)
    names = [generation.prompts.names.get(name, name) for name in real_train.class_names]
    judge, score = levers.judge(config.filtering, judge_runs, real_train, study, names)
    confidence = levers.judge_confidence(candidates, output_dir, real_train, score)
    return levers.select_filtered(candidates, confidence, judge, generation.images_per_class, config)


def train_on_generated(
    lever: str,
    manifest: pd.DataFrame,
    output_dir: Path,
    real_train: ImageSet,
    study: Study,
    generation: GenerationConfig,
    config: LeversConfig,
    headline_cut: int,
) -> pd.DataFrame:
    """Students of each generated set of a lever (more_images or filtering), then the headline swap from each."""
    sets = levers.generated_sets(manifest, output_dir, real_train, generation).after({levers.SETS["real"]: real_train})
    if lever == "more_images":
        classes, per_class = real_train.num_classes, generation.images_per_class
        jobs = levers.plan_more_images(manifest, per_class, classes, study.training, config)
    else:
        jobs = levers.plan_filtering(manifest, config)
    return levers.train_with_swaps(lever, study, sets, jobs, config, headline_cut)


def summarize_levers(
    real_runs: pd.DataFrame, synthetic_runs: pd.DataFrame, *lever_runs: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, dict[str, float]], plt.Figure, go.Figure]:
    """Each lever's students and their headline swaps against the baselines, paired by seed; as a chart too."""
    summary, metrics = levers.summarize(real_runs, synthetic_runs, list(lever_runs))
    chart = levers_chart(summary, real_runs)
    return summary, metrics, matplotlib_figure(chart), plotly_figure(chart)
