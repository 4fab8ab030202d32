"""Levers: what users of synthetic data try next to close the gap, each asked the layer swap's question.

A lever changes how the synthetic students learn; its students train on the synthetic set over the seeds. From
each of them, the layer swap's headline student (units 0..cut-1 kept from it and frozen, the rest retrained on real
images, as ``layer_swap``'s headline cell) asks: with the lever applied, how much of the gap left does retraining
the last units on real data still recover? The synthetic baselines are the reference lever (``none``), with the
layer swap's own headline students (the same students: a run of the layer swap trains them once).

- distillation: the synthetic images labelled by a teacher instead of their prompt's class: the real-trained
  baseline student of the same seed, its predictions on each training batch softened at a temperature (Hinton et
  al., 2015, as DM-KD, He et al. 2023, distils from synthetic images). If it closes most of the gap, what the last
  units lack is the decision boundary real labels give, not the features.
- more_images: the synthetic set at 2x, 4x... the images a class (Real-Fake; Fan et al. find synthetic data scales
  poorly), the generation's own set its first images (a generated set's first images are the same for any larger
  count), each trained at the recipe's epochs (more steps) and at the synthetic baselines' optimizer steps (the same
  schedule, more distinct images).
- filtering: a judge keeps the images it is most confident show their class (He et al. 2023 filter with CLIP):
  of each class's first images_per_class / share generated images, the images_per_class it scores highest, so the
  set keeps its size. The judge is CLIP zero-shot, or a student trained on the generator pool, real images no
  other student sees (offline, where no CLIP weights are).

The larger pool both draw from is one generation (``pool``): the generation pipeline's, topped up in its folder.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import torch
from pydantic import Field, PositiveFloat

from mind_the_gap.analysis.clip_judge import ClipJudge, clip_weights_present
from mind_the_gap.analysis.statistics import (
    by_seed,
    gap_recovered,
    paired_columns,
    paired_difference,
    ratio_columns,
    with_holm,
)
from mind_the_gap.config import Config
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.devices import resolve_device
from mind_the_gap.experiments import layer_swap
from mind_the_gap.experiments.ablations import SETS
from mind_the_gap.experiments.study import (
    SeedsConfig,
    SetsOnDemand,
    StudentJob,
    Study,
    as_metrics,
    load_students,
    parent_keys,
    summarize_runs,
    train_cell,
    views,
)
from mind_the_gap.generators.config import GenerationConfig
from mind_the_gap.generators.store import load_images
from mind_the_gap.generators.synthesis import SetShape, generate_set, load_set
from mind_the_gap.keys import content_key
from mind_the_gap.models.architectures import StudentConfig
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.distillation import Teacher
from mind_the_gap.training.engine import planned_steps, predict
from mind_the_gap.training.transfer import TransferConfig

BASELINE = "none"  # the synthetic baselines, the lever every other is compared with
SWAPPED = "last units real"  # the trained_on of a lever's headline layer-swap students
LEVERS = ("distillation", "more_images", "filtering")  # besides the reference, the synthetic baselines
GENERATOR_POOL = "real_generator_pool"  # the stored set the judge trains on


class DistillationLever(Config):
    temperatures: list[PositiveFloat] = Field(
        [4.0], description="softmax temperatures of the teacher's and the student's predictions; [] for none"
    )


class MoreImagesLever(Config):
    factors: list[Annotated[int, Field(ge=2)]] = Field(
        [2, 4], description="images a class, times the generation's (1x is the synthetic baselines); [] for none"
    )
    budgets: list[Literal["epochs", "steps"]] = Field(
        ["epochs", "steps"],
        min_length=1,
        description="epochs: the recipe's epochs over the larger set; steps: the synthetic baselines' steps",
    )


class FilteringLever(Config):
    keep_shares: list[Annotated[float, Field(gt=0, lt=1)]] = Field(
        [0.8, 0.5], description="shares of the generated images the judge keeps, topped up to the set's size"
    )
    judge: Literal["auto", "clip", "student"] = Field(
        "student",
        description="clip: CLIP zero-shot; student: a student trained on the generator pool; auto: CLIP where its "
        "weights are present, else a student",
    )
    judge_seed: int = Field(0, description="the seed of the judge student")
    clip_model_id: str = Field("openai/clip-vit-large-patch14", description="the CLIP judge: a Hub id or a folder")


class LeversConfig(SeedsConfig, TransferConfig):
    """The seeds, each lever's variants, and how the headline layer-swap students keep units (as the layer swap)."""

    distillation: DistillationLever = DistillationLever()
    more_images: MoreImagesLever = MoreImagesLever()
    filtering: FilteringLever = FilteringLever()


def _job(lever: str, variant: str, seed: int, train: str = SETS["synthetic"], **fields: Any) -> StudentJob:
    columns = {"lever": lever, "variant": variant, "trained_on": "synthetic"} | fields.pop("columns", {})
    return StudentJob(f"levers/{lever}/{variant}/synthetic/seed{seed}", seed, views(train), **fields, columns=columns)


def plan_distillation(real_runs: pd.DataFrame, config: LeversConfig) -> list[StudentJob]:
    """Per temperature and seed, a student of the synthetic set taught by the real baseline student of its seed."""
    teachers = parent_keys(real_runs, config.seeds, "real", "levers.distillation")
    return [
        _job(
            "distillation",
            f"temperature {temperature:g}",
            seed,
            teacher=Teacher(teachers[seed], temperature),
            columns={"teacher": teachers[seed]},
        )
        for temperature in config.distillation.temperatures
        for seed in config.seeds
    ]


def pool_generation(generation: GenerationConfig, config: LeversConfig) -> GenerationConfig:
    """The generation of the pool more_images and filtering draw from: the generation's own (its images the pool's
    first of each class), with as many images a class as the largest factor and the smallest keep share need."""
    per_class = generation.images_per_class
    needs = [per_class]
    needs += [factor * per_class for factor in config.more_images.factors]
    needs += [math.ceil(per_class / share) for share in config.filtering.keep_shares]
    return generation.model_copy(update={"images_per_class": max(needs)})


def check_pool(pool: pd.DataFrame, synthetic_manifest: pd.DataFrame) -> pd.DataFrame:
    """The pool, once it is known to start with the synthetic baselines' set: the same generation, topped up."""
    pool_key, own_key = pool["run_key"].iloc[0], synthetic_manifest["run_key"].iloc[0]
    if pool_key != own_key:
        raise ValueError(
            f"levers: the pool's generation ({pool_key}) is not the one the synthetic baselines trained on "
            f"({own_key}): the generation parameters changed since; run `kedro run --pipeline generation` first"
        )
    return pool


def more_images_set(factor: int) -> str:
    return f"{factor}x images"


def kept_set(share: float) -> str:
    return f"judge keeps {share:.0%}"


def select_more_images(pool: pd.DataFrame, images_per_class: int, config: LeversConfig) -> pd.DataFrame:
    """Per factor, the pool's first ``factor * images_per_class`` images of each class: one manifest with a
    ``variant`` column (the set's name)."""
    parts = [
        pool[pool["index"] < factor * images_per_class].assign(variant=more_images_set(factor))
        for factor in config.more_images.factors
    ]
    return pd.concat(parts, ignore_index=True) if parts else pool.iloc[:0].assign(variant="")


def judge_job(config: LeversConfig) -> StudentJob:
    """The filtering's judge: a student of the study's recipe on the generator pool, real images no student sees."""
    seed = config.filtering.judge_seed
    columns = {"lever": "filtering", "variant": "judge", "trained_on": "generator pool"}
    return StudentJob(f"levers/filtering/judge/seed{seed}", seed, views(GENERATOR_POOL), columns=columns)


def judge_kind(config: FilteringLever) -> Literal["clip", "student"]:
    """The judge the filtering uses: ``auto`` is CLIP where its weights are present, else a student."""
    if config.judge == "auto":
        return "clip" if clip_weights_present(config.clip_model_id) else "student"
    return config.judge


def judge(
    config: FilteringLever, judge_runs: pd.DataFrame, real_train: ImageSet, study: Study, names: list[str]
) -> tuple[str, Callable[[ImageSet], torch.Tensor]]:
    """The filtering's judge, named (CLIP's model id, or the judge student's key), and how it scores images: the
    probability it gives each image's own class (``names``: the classes as CLIP's prompts name them)."""
    device = resolve_device(study.training.device, allow_cpu=study.training.allow_cpu)
    if judge_kind(config) == "clip":
        return f"clip {config.clip_model_id}", ClipJudge(config.clip_model_id, names, device).confidence
    seed = int(judge_runs["seed"].iloc[0])
    model, result = load_students(judge_runs, [seed], "judge", study, real_train)[seed]

    def confidence(images: ImageSet) -> torch.Tensor:
        logits = predict(model, images, result.normalization, study.training, device=device)
        return logits.softmax(1).gather(1, images.labels[:, None]).squeeze(1)

    return str(judge_runs["student_key"].iloc[0]), confidence


def judge_confidence(
    pool: pd.DataFrame, output_dir: Path, real_train: ImageSet, confidence: Callable[[ImageSet], torch.Tensor]
) -> pd.Series:
    """The judge's ``confidence`` in each pool image's own class, read class by class (one class's images in memory
    at a time)."""
    size, channels = real_train.image_size[0], real_train.channels
    scores = []
    for _, rows in pool.groupby("class_index", sort=False):
        images = load_images(output_dir, rows, size, channels, real_train.class_names)
        scores.append(pd.Series(confidence(images).numpy(), rows.index))
    return pd.concat(scores).reindex(pool.index)


def filter_candidates(pool: pd.DataFrame, images_per_class: int, config: LeversConfig) -> pd.DataFrame:
    """The pool images some keep share chooses from: each class's first ``ceil(images_per_class / share)``."""
    shares = config.filtering.keep_shares
    return pool[pool["index"] < max((math.ceil(images_per_class / share) for share in shares), default=0)]


def select_filtered(
    pool: pd.DataFrame, confidence: pd.Series, judge_key: str, images_per_class: int, config: LeversConfig
) -> pd.DataFrame:
    """Per keep share, of each class's first ``ceil(images_per_class / share)`` pool images the ``images_per_class``
    the judge is most confident about (ties to the earlier image), in the pool's order: one manifest with ``variant``,
    ``judge_confidence`` and ``judge`` columns."""
    scored = pool.assign(judge_confidence=confidence, judge=judge_key)
    parts = []
    for share in config.filtering.keep_shares:
        candidates = scored[scored["index"] < math.ceil(images_per_class / share)]
        ranked = candidates.sort_values(["judge_confidence", "index"], ascending=[False, True], kind="stable")
        kept = ranked.groupby("class_index", sort=False).head(images_per_class).sort_index()
        parts.append(kept.assign(variant=kept_set(share)))
    return pd.concat(parts, ignore_index=True) if parts else scored.iloc[:0].assign(variant="")


def generated_sets(
    manifest: pd.DataFrame, output_dir: Path, real_train: ImageSet, generation: GenerationConfig
) -> SetsOnDemand:
    """Each set of a manifest with a ``variant`` column, read from disk when a student needs it (one at a time)."""
    groups = dict(list(manifest.groupby("variant", sort=False)))
    classes = real_train.num_classes
    loaders = {
        name: partial(
            load_set,
            rows,
            output_dir,
            real_train,
            generation.model_copy(update={"images_per_class": len(rows) // classes}),
        )
        for name, rows in groups.items()
    }
    return SetsOnDemand(loaders, {name: len(rows) for name, rows in groups.items()})


def _lineage(rows: pd.DataFrame) -> dict[str, str]:
    """What made a generated set, on each of its students' runs: the generation's run key and the set's images."""
    lineage = {"generation_key": str(rows["run_key"].iloc[0]), "set_digest": content_key(list(rows["file"]), 16)}
    return lineage | ({"judge_key": str(rows["judge"].iloc[0])} if "judge" in rows else {})


def plan_more_images(
    manifest: pd.DataFrame, images_per_class: int, classes: int, training: TrainConfig, config: LeversConfig
) -> list[StudentJob]:
    """Per factor, budget and seed, a student of the larger set: at the recipe's epochs, or capped at the synthetic
    baselines' optimizer steps (with the same schedule over them)."""
    baseline_steps = planned_steps(images_per_class * classes, training)
    recipes = {"epochs": None, "steps": training.model_copy(update={"max_steps": baseline_steps})}
    jobs = []
    for name, rows in manifest.groupby("variant", sort=False):
        for budget in config.more_images.budgets:
            jobs += [
                _job(
                    "more_images",
                    f"{name}, same {budget}",
                    seed,
                    name,
                    training=recipes[budget],
                    columns=_lineage(rows),
                )
                for seed in config.seeds
            ]
    return jobs


def plan_filtering(manifest: pd.DataFrame, config: LeversConfig) -> list[StudentJob]:
    """Per keep share and seed, a student of the judge's kept set."""
    return [
        _job("filtering", name, seed, name, columns=_lineage(rows))
        for name, rows in manifest.groupby("variant", sort=False)
        for seed in config.seeds
    ]


def plan_swaps(
    lever: str, runs: pd.DataFrame, student: StudentConfig, config: LeversConfig, headline_cut: int
) -> list[StudentJob]:
    """From each student of ``runs`` (a lever's, by variant), the layer swap's headline student: units
    0..``headline_cut``-1 kept from it, the rest retrained on the real training pool."""
    transfer = config.model_dump(include=set(TransferConfig.model_fields))
    swap = layer_swap.LayerSwapConfig(seeds=config.seeds, cuts=[headline_cut], headline_cut=headline_cut, **transfer)
    jobs = []
    for variant, students in runs.groupby("variant", sort=False):
        for job in layer_swap.plan("prefix", "synthetic", students, SETS["real"], student, swap):
            columns = {"lever": lever, "variant": variant, "trained_on": SWAPPED, "kept": job.columns["kept"]}
            jobs.append(replace(job, name=f"levers/{lever}/{variant}/{SWAPPED}/seed{job.seed}", columns=columns))
    return jobs


def generate_pool(
    synthetic_manifest: pd.DataFrame,
    generation: GenerationConfig,
    generator_model: dict[str, Any],
    real_train: ImageSet,
    output_dir: Path,
    config: LeversConfig,
) -> pd.DataFrame:
    """The generation's images topped up to as many a class as more_images and filtering need: its manifest."""
    pool = pool_generation(generation, config)
    manifest, _ = generate_set(pool, generator_model, SetShape.of(real_train), output_dir, real_train)
    return check_pool(manifest, synthetic_manifest)


def train_judge(generator_pool: ImageSet, study: Study, config: LeversConfig) -> pd.DataFrame:
    """The filtering's judge, where it is a student of the generator pool (none where CLIP judges)."""
    if not config.filtering.keep_shares or judge_kind(config.filtering) == "clip":
        return pd.DataFrame(columns=["seed", "student_key"])
    if len(generator_pool) == 0:
        raise ValueError(
            "levers.filtering needs a judge: CLIP (no weights for levers.filtering.clip_model_id "
            f"{config.filtering.clip_model_id!r} here) or a student of the generator pool, which is empty: download "
            "the CLIP model, set dataset.split.generator_pool above 0, or set levers.filtering.keep_shares to []"
        )
    return train_cell(study, "levers", "judge", [judge_job(config)], {GENERATOR_POOL: generator_pool})


def filter_pool(
    pool: pd.DataFrame,
    judge_runs: pd.DataFrame,
    output_dir: Path,
    real_train: ImageSet,
    study: Study,
    generation: GenerationConfig,
    config: LeversConfig,
) -> pd.DataFrame:
    """Each keep share's set: the images of each class the judge is most confident about (``select_filtered``)."""
    if not config.filtering.keep_shares:
        return pool.iloc[:0].assign(variant="")
    candidates = filter_candidates(pool, generation.images_per_class, config)
    names = [generation.prompts.names.get(name, name) for name in real_train.class_names]
    name, score = judge(config.filtering, judge_runs, real_train, study, names)
    confidence = judge_confidence(candidates, output_dir, real_train, score)
    return select_filtered(candidates, confidence, name, generation.images_per_class, config)


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
    sets = generated_sets(manifest, output_dir, real_train, generation).after({SETS["real"]: real_train})
    if lever == "more_images":
        per_class = generation.images_per_class
        jobs = plan_more_images(manifest, per_class, real_train.num_classes, study.training, config)
    else:
        jobs = plan_filtering(manifest, config)
    return train_with_swaps(lever, study, sets, jobs, config, headline_cut)


def train_with_swaps(
    lever: str,
    study: Study,
    sets: Mapping[str, ImageSet],
    jobs: list[StudentJob],
    config: LeversConfig,
    headline_cut: int,
) -> pd.DataFrame:
    """A lever's students (``jobs``), then the headline layer-swap student from each (``sets`` holds both's data)."""
    if not jobs:
        return pd.DataFrame(columns=["lever", "variant", "trained_on", "seed", "student_key", "test_accuracy"])
    runs = train_cell(study, "levers", lever, jobs, sets)
    swaps = plan_swaps(lever, runs, study.student, config, headline_cut)
    return pd.concat([runs, train_cell(study, "levers", lever, swaps, sets)], ignore_index=True)


def train_baseline_swaps(
    study: Study, sets: Mapping[str, ImageSet], synthetic_runs: pd.DataFrame, config: LeversConfig, headline_cut: int
) -> pd.DataFrame:
    """The reference lever ``none``: the headline layer-swap students of the synthetic baselines."""
    runs = synthetic_runs.assign(lever=BASELINE, variant="synthetic baseline", trained_on="synthetic")
    return train_cell(study, "levers", BASELINE, plan_swaps(BASELINE, runs, study.student, config, headline_cut), sets)


def summarize(
    real_runs: pd.DataFrame, synthetic_runs: pd.DataFrame, lever_runs: list[pd.DataFrame]
) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """One row per lever and variant (the synthetic baselines first, as lever ``none``): its synthetic students'
    accuracy and their headline layer-swap students', mean ± 95% CI over seeds, and, paired by seed:

    - ``gap_pp``: points below the real baseline students;
    - ``vs_baseline_pp``: points gained over the synthetic baseline students, Holm-corrected over the levers' rows;
    - ``remaining_recovered``: the share of the gap left after the lever that its headline layer-swap students
      recover, 0 at the lever's students, 1 at the real baselines, with Fieller's 95% interval.
    """
    runs = pd.concat(lever_runs, ignore_index=True)
    baseline = synthetic_runs.assign(lever=BASELINE, variant="synthetic baseline", trained_on="synthetic")
    students = pd.concat([baseline, runs[runs["trained_on"] == "synthetic"]], ignore_index=True)
    swaps = runs[runs["trained_on"] == SWAPPED]
    summary, metrics = summarize_runs(students.assign(pipeline="levers"), by=["lever", "variant"])
    rows = []
    for lever, variant in summary[["lever", "variant"]].itertuples(index=False):
        own = students[(students["lever"] == lever) & (students["variant"] == variant)]
        swapped = swaps[(swaps["lever"] == lever) & (swaps["variant"] == variant)]
        row = paired_columns("gap_pp", paired_difference(*by_seed(real_runs, own)))
        if lever != BASELINE:
            row |= paired_columns("vs_baseline_pp", paired_difference(*by_seed(own, synthetic_runs)))
        if len(swapped):
            row |= _swap_columns(swapped, own, real_runs)
        rows.append(row)
    summary = pd.concat([summary, pd.DataFrame(rows, index=summary.index)], axis=1)
    if "vs_baseline_pp_p" in summary:
        summary = with_holm(summary, "vs_baseline_pp")
    values = {
        f"{row.lever}.{row.variant}.{name}": getattr(row, name, None)
        for row in summary.itertuples()
        for name in ("gap_pp", "vs_baseline_pp", "remaining_recovered")
    }
    return summary, metrics | as_metrics(values)


def _swap_columns(swapped: pd.DataFrame, own: pd.DataFrame, real_runs: pd.DataFrame) -> dict[str, Any]:
    mean, ci = summarize_runs(swapped.assign(pipeline="levers"), by=["lever"])[0][
        ["test_accuracy_mean", "test_accuracy_ci95"]
    ].iloc[0]
    return {
        "swap_kept": swapped["kept"].iloc[0],
        "swap_accuracy_mean": mean,
        "swap_accuracy_ci95": ci,
        **ratio_columns("remaining_recovered", gap_recovered(*by_seed(swapped, own, real_runs))),
    }
