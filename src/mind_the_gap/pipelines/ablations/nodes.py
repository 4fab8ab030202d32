"""Ablations: the other suspects for the gap, each a factor whose variants train students over the seeds.

- augmentation: no augmentation or a strong policy instead of the standard crop and flip, for both sources.
- texture_shape: a training variant that pushes toward shape (local pixel shuffles), for both sources; every
  student tested on shape-only (edges) and texture-only (patch-shuffled) views of the real test set.
- oracle: synthetic images conditioned on real ones (img2img at several strengths) instead of on the class alone.
- diversity: synthetic sets generated at several guidance scales (more guidance, less variety), each with its
  diversity, its synthetic-only students and the two key layer-swap cells (first or last units learned from real).
- mixing: real and synthetic images mixed at a fixed total size, and all real images plus the synthetic set.

Variants that equal a baseline (standard augmentation, the generation's own guidance scale, real shares 0 and 1)
reuse the baseline students from the store.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from pydantic import Field

from mind_the_gap.analysis import representations, statistics
from mind_the_gap.analysis.cache import cached_table
from mind_the_gap.analysis.representations import unit_features
from mind_the_gap.analysis.statistics import within_class_spread
from mind_the_gap.charts import BarChart, Bars, Level, ci_or_zero
from mind_the_gap.config import Config
from mind_the_gap.data import views
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.data.prepare import nested_subsets
from mind_the_gap.data.views import edge_view, load_cue_conflict, patch_shuffled, shape_bias
from mind_the_gap.devices import resolve_device
from mind_the_gap.generators.config import GenerationConfig
from mind_the_gap.interactive import plotly_figure
from mind_the_gap.models.architectures import StudentConfig, student_unit_names
from mind_the_gap.pipelines.generation.nodes import generate_synthetic_images, pack_synthetic_images
from mind_the_gap.pipelines.student_runs import (
    SeedsConfig,
    StudentJob,
    load_students,
    parent_keys,
    summarize_runs,
    train_cell,
)
from mind_the_gap.reporting import matplotlib_figure, summarize
from mind_the_gap.tracking import metric_name
from mind_the_gap.training import engine
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.engine import predict
from mind_the_gap.training.student_cache import code_version
from mind_the_gap.training.transfer import Transfer, TransferConfig

log = logging.getLogger(__name__)

Source = Literal["real", "synthetic"]
Policy = Literal["none", "rand_augment", "trivial_augment", "auto_augment"]


class AugmentationAblation(Config):
    policies: list[Policy] = Field(
        ["none", "rand_augment", "trivial_augment", "auto_augment"],
        description="none, or a strong policy on top of the standard crop and flip",
    )
    sources: list[Source] = ["real", "synthetic"]


class TextureShapeAblation(Config):
    sources: list[Source] = ["real", "synthetic"]
    texture_grid: int = Field(4, ge=2, description="the texture view: patches per side, shuffled")
    cue_conflict_dir: str | None = Field(None, description="a folder of cue-conflict images in Geirhos et al.'s layout")


class OracleAblation(Config):
    strengths: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        [0.25, 0.5, 0.75, 1.0], description="img2img: 0 would be the real image itself, 1 pure noise"
    )
    unclip: bool = Field(False, description="also Stable unCLIP conditioned on each real image (needs its weights)")


class DiversityAblation(Config):
    guidance_scales: list[Annotated[float, Field(ge=0)]] = [1.0, 2.0, 4.0, 8.0]
    spread_images: int = Field(256, ge=2, description="images per class whose pairwise feature distances are averaged")
    first_units: int = Field(3, ge=1, description="layer swap: the first units learned from real, the rest kept")
    last_units: int = Field(3, ge=1, description="layer swap: the last units learned from real, the rest kept")


class MixingAblation(Config):
    real_shares: list[Annotated[float, Field(gt=0, lt=1)]] = Field(
        [0.1, 0.25, 0.5], description="at the real pool's size; 0 and 1 are the baselines"
    )
    add_synthetic: bool = Field(True, description="also every real image plus the whole synthetic set")


class AblationsConfig(SeedsConfig, TransferConfig):
    """The seeds, each factor's variants, and how the diversity factor's layer-swap students keep units."""

    augmentation: AugmentationAblation = AugmentationAblation()
    texture_shape: TextureShapeAblation = TextureShapeAblation()
    oracle: OracleAblation = OracleAblation()
    diversity: DiversityAblation = DiversityAblation()
    mixing: MixingAblation = MixingAblation()


def _job(
    factor: str,
    variant: str,
    trained_on: str,
    seed: int,
    train: ImageSet,
    real_images: int | None = None,
    **extra: Any,
) -> StudentJob:
    columns = {"factor": factor, "variant": variant, "trained_on": trained_on, "train_images": len(train)}
    if real_images is not None:
        columns["real_images"] = real_images
    return StudentJob(f"ablations/{factor}/{variant}/{trained_on}/seed{seed}", seed, train, columns=columns, **extra)


def train_augmentation(
    real_train: ImageSet,
    synthetic_train: ImageSet,
    val: ImageSet,
    test: ImageSet,
    store: Path,
    real_statistics: dict[str, list[float]],
    student: StudentConfig,
    training: TrainConfig,
    ablations: AblationsConfig,
) -> pd.DataFrame:
    """Students of each source with no augmentation, or with a strong policy added to the standard one."""
    sets = {"real": real_train, "synthetic": synthetic_train}
    config = ablations.augmentation
    jobs = []
    for policy in config.policies:
        augment = [] if policy == "none" else [*training.augment, policy]
        recipe = training.model_copy(update={"augment": augment})
        jobs += [
            _job("augmentation", policy, source, seed, sets[source], training=recipe)
            for source in config.sources
            for seed in ablations.seeds
        ]
    return train_cell("ablations", "augmentation", jobs, val, test, store, student, training, real_statistics)


def train_texture_shape(
    real_train: ImageSet,
    synthetic_train: ImageSet,
    val: ImageSet,
    test: ImageSet,
    store: Path,
    real_statistics: dict[str, list[float]],
    student: StudentConfig,
    training: TrainConfig,
    ablations: AblationsConfig,
) -> pd.DataFrame:
    """Students of each source trained with local pixel shuffles on top of the standard augmentation."""
    sets = {"real": real_train, "synthetic": synthetic_train}
    recipe = training.model_copy(update={"augment": [*training.augment, "local_shuffle"]})
    jobs = [
        _job("texture_shape", "local_shuffle", source, seed, sets[source], training=recipe)
        for source in ablations.texture_shape.sources
        for seed in ablations.seeds
    ]
    return train_cell("ablations", "texture_shape", jobs, val, test, store, student, training, real_statistics)


def generate_oracle_sets(
    generation: GenerationConfig,
    generator_model: dict[str, Any],
    real_train: ImageSet,
    output_dir: Path,
    ablations: AblationsConfig,
) -> pd.DataFrame:
    """One synthetic set per strength, each image denoised from a noised real training image of its class by the
    generation's own model (the offline generator, or Stable Diffusion), and with ``unclip`` one from Stable
    unCLIP's embedding of the real image."""
    offline = generation.backend == "class_diffusion" or (
        generation.backend == "img2img" and generation.img2img_model == "class_diffusion"
    )
    model = "class_diffusion" if offline else "stable_diffusion"
    configs = {
        f"strength {s:g}": generation.model_copy(update={"backend": "img2img", "img2img_model": model, "strength": s})
        for s in ablations.oracle.strengths
    }
    if ablations.oracle.unclip:
        configs["unclip"] = generation.model_copy(update={"backend": "unclip"})
    return _generate(configs, generator_model, real_train, output_dir)


def generate_diversity_sets(
    generation: GenerationConfig,
    generator_model: dict[str, Any],
    real_train: ImageSet,
    output_dir: Path,
    ablations: AblationsConfig,
) -> pd.DataFrame:
    """One synthetic set per guidance scale, as the generation pipeline makes it otherwise (the generation's own
    scale gives its very images, reused from disk)."""
    configs = {
        f"guidance {g:g}": generation.model_copy(update={"guidance_scale": g})
        for g in ablations.diversity.guidance_scales
    }
    return _generate(configs, generator_model, real_train, output_dir)


def _generate(
    configs: dict[str, GenerationConfig], generator_model: dict[str, Any], real_train: ImageSet, output_dir: Path
) -> pd.DataFrame:
    manifests = []
    for variant, config in configs.items():
        manifest, _ = generate_synthetic_images(config, generator_model, real_train, output_dir)
        manifests.append(manifest.assign(variant=variant))
    return pd.concat(manifests, ignore_index=True) if manifests else pd.DataFrame(columns=["variant"])


def _generated_sets(manifest: pd.DataFrame, output_dir: Path, real_train: ImageSet, generation: GenerationConfig):
    return {
        variant: pack_synthetic_images(rows, output_dir, real_train, generation)
        for variant, rows in manifest.groupby("variant", sort=False)
    }


def train_oracle(
    manifest: pd.DataFrame,
    output_dir: Path,
    generation: GenerationConfig,
    real_train: ImageSet,
    val: ImageSet,
    test: ImageSet,
    store: Path,
    real_statistics: dict[str, list[float]],
    student: StudentConfig,
    training: TrainConfig,
    ablations: AblationsConfig,
) -> pd.DataFrame:
    """Synthetic-only students on each oracle set."""
    sets = _generated_sets(manifest, output_dir, real_train, generation)
    jobs = [
        _job("oracle", variant, "synthetic", seed, images)
        for variant, images in sets.items()
        for seed in ablations.seeds
    ]
    return train_cell("ablations", "oracle", jobs, val, test, store, student, training, real_statistics)


def train_diversity(
    manifest: pd.DataFrame,
    output_dir: Path,
    generation: GenerationConfig,
    real_train: ImageSet,
    val: ImageSet,
    test: ImageSet,
    store: Path,
    real_statistics: dict[str, list[float]],
    student: StudentConfig,
    training: TrainConfig,
    ablations: AblationsConfig,
) -> pd.DataFrame:
    """Per guidance scale: synthetic-only students, then from each the two key layer-swap students, the first or
    the last units trained on real images and the rest kept from the synthetic student."""
    sets = _generated_sets(manifest, output_dir, real_train, generation)
    config, num_units = ablations.diversity, len(student_unit_names(student))
    if config.first_units >= num_units or config.last_units >= num_units:
        raise ValueError(
            f"ablations.diversity.first_units and last_units must leave a unit kept: the student has {num_units}"
        )
    synthetic = [
        _job("diversity", variant, "synthetic", seed, images)
        for variant, images in sets.items()
        for seed in ablations.seeds
    ]
    runs = train_cell("ablations", "diversity", synthetic, val, test, store, student, training, real_statistics)
    transfer = TransferConfig.model_validate(ablations.model_dump(include=set(TransferConfig.model_fields)))
    swaps = {
        f"first {config.first_units} real": f"{config.first_units}-{num_units - 1}",
        f"last {config.last_units} real": f"0-{num_units - config.last_units - 1}",
    }
    jobs = []
    for variant in sets:
        parents = parent_keys(runs[runs["variant"] == variant], ablations.seeds, "synthetic", "ablations.diversity")
        for label, kept in swaps.items():
            jobs += [
                _job(
                    "diversity",
                    variant,
                    f"{label}, rest synthetic",
                    seed,
                    real_train,
                    transfer=Transfer(parents[seed], kept, transfer),
                )
                for seed in ablations.seeds
            ]
    swapped = train_cell("ablations", "diversity", jobs, val, test, store, student, training, real_statistics)
    return pd.concat([runs, swapped], ignore_index=True)


def measure_diversity(
    manifest: pd.DataFrame,
    output_dir: Path,
    generation: GenerationConfig,
    real_train: ImageSet,
    synthetic_train: ImageSet,
    real_runs: pd.DataFrame,
    store: Path,
    analyses: Path,
    student: StudentConfig,
    training: TrainConfig,
    ablations: AblationsConfig,
) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Within-class spread of each set in the penultimate features of the first seed's real-trained student, and
    its share of the real training pool's spread; cached in ``analyses`` by the judge, the sets and the settings."""
    seed = min(ablations.seeds)
    generated = {variant: [rows["run_key"].iloc[0], len(rows)] for variant, rows in manifest.groupby("variant")}
    parts = {
        "analysis": "measure_diversity",
        "code": _code(),
        "spread_images": ablations.diversity.spread_images,
        "judge": parent_keys(real_runs, [seed], "real", "ablations.diversity")[seed],
        "sets": {"real": real_train.fingerprint(), "synthetic": synthetic_train.fingerprint(), **generated},
    }

    def compute() -> pd.DataFrame:
        judge, result = load_students(real_runs, [seed], "real", store, student, real_train)[seed]
        judge.to(resolve_device(training.device))
        sets = {
            "real": real_train,
            "synthetic (generation)": synthetic_train,
            **_generated_sets(manifest, output_dir, real_train, generation),
        }
        rows = []
        for name, images in sets.items():
            features = unit_features(
                judge, images, result.normalization, pooled=True, batch_size=training.eval_batch_size
            )
            spread = within_class_spread(features[-2], images.labels, ablations.diversity.spread_images)
            rows.append({"set": name, "within_class_spread": spread})
        table = pd.DataFrame(rows)
        table["share_of_real"] = table["within_class_spread"] / table.loc[0, "within_class_spread"]
        return table

    table = cached_table(analyses, parts, compute)
    metrics = {
        metric_name(f"{r.set}.share_of_real"): {"value": float(r.share_of_real), "step": 0} for r in table.itertuples()
    }
    return table, metrics


def _code() -> str:
    """The version of the code an analysis runs: its key changes with it."""
    return code_version((statistics, representations, views, engine, sys.modules[__name__]))


def train_mixing(
    real_train: ImageSet,
    synthetic_train: ImageSet,
    val: ImageSet,
    test: ImageSet,
    store: Path,
    real_statistics: dict[str, list[float]],
    student: StudentConfig,
    training: TrainConfig,
    ablations: AblationsConfig,
) -> pd.DataFrame:
    """Students on real and synthetic images mixed at the real pool's size (stratified, drawn from the seed), and
    on every real image plus the whole synthetic set."""
    config = ablations.mixing
    jobs = []
    for seed in ablations.seeds:
        for share in config.real_shares:
            generator = torch.Generator().manual_seed(seed)
            real = nested_subsets(real_train, [share], generator)[share]
            # The synthetic part fills the rest of the real pool's size, whatever the synthetic set's own size.
            fraction = (len(real_train) - len(real)) / len(synthetic_train)
            if fraction > 1:
                raise ValueError(
                    f"ablations.mixing: a real share of {share} needs {len(real_train) - len(real)} "
                    f"synthetic images, the synthetic set has {len(synthetic_train)}"
                )
            synthetic = nested_subsets(synthetic_train, [fraction], generator)[fraction]
            jobs.append(
                _job(
                    "mixing",
                    f"{share:.0%} real",
                    "real + synthetic",
                    seed,
                    concat(real, synthetic),
                    real_images=len(real),
                )
            )
        if config.add_synthetic:
            everything = concat(real_train, synthetic_train)
            jobs.append(
                _job(
                    "mixing",
                    "all real + all synthetic",
                    "real + synthetic",
                    seed,
                    everything,
                    real_images=len(real_train),
                )
            )
    return train_cell("ablations", "mixing", jobs, val, test, store, student, training, real_statistics)


def concat(*sets: ImageSet) -> ImageSet:
    """The images of several sets of the same classes, in order."""
    names = sets[0].class_names
    if any(s.class_names != names for s in sets) or len({s.images.shape[1:] for s in sets}) > 1:
        raise ValueError("cannot mix image sets of different classes, sizes or channels")
    return ImageSet(torch.cat([s.images for s in sets]), torch.cat([s.labels for s in sets]), names)


def evaluate_texture_shape(
    real_runs: pd.DataFrame,
    synthetic_runs: pd.DataFrame,
    texture_shape_runs: pd.DataFrame,
    real_test: ImageSet,
    store: Path,
    analyses: Path,
    student: StudentConfig,
    training: TrainConfig,
    ablations: AblationsConfig,
) -> pd.DataFrame:
    """Every baseline and texture-shape student on the real test set, its shape-only (edges) and texture-only
    (patch-shuffled) views, and, where given, cue-conflict images: accuracy on each and the shape bias. Cached in
    ``analyses`` by the students, the test set, the settings and the cue-conflict folder's files."""
    groups = [("standard", "real", real_runs), ("standard", "synthetic", synthetic_runs)]
    groups += [("local_shuffle", source, rows) for source, rows in texture_shape_runs.groupby("trained_on")]
    folder = ablations.texture_shape.cue_conflict_dir
    files = (
        sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in Path(folder).rglob("*") if p.is_file())
        if folder is not None and Path(folder).is_dir()
        else None
    )
    parts = {
        "analysis": "evaluate_texture_shape",
        "code": _code(),
        "test": real_test.fingerprint(),
        "config": ablations.texture_shape.model_dump(mode="json"),
        "cue_conflict_files": files,
        "students": [
            [variant, source, parent_keys(rows, ablations.seeds, source, "ablations.texture_shape")]
            for variant, source, rows in groups
        ],
    }
    return cached_table(
        analyses, parts, lambda: _evaluate_views(groups, real_test, store, student, training, ablations)
    )


def _evaluate_views(
    groups: list[tuple[str, str, pd.DataFrame]],
    real_test: ImageSet,
    store: Path,
    student: StudentConfig,
    training: TrainConfig,
    ablations: AblationsConfig,
) -> pd.DataFrame:
    config = ablations.texture_shape
    texture = patch_shuffled(real_test.images, config.texture_grid, torch.Generator().manual_seed(0))
    views = {"shape": edge_view(real_test.images), "texture": texture}
    cue_conflict = None
    if config.cue_conflict_dir is not None:
        cue_conflict = load_cue_conflict(
            config.cue_conflict_dir, real_test.class_names, real_test.image_size[0], real_test.channels
        )
    rows = []
    for variant, source, runs in groups:
        for seed, (model, result) in load_students(runs, ablations.seeds, source, store, student, real_test).items():
            row = {"variant": variant, "trained_on": source, "seed": seed, "test_accuracy": result.test.top1}
            for view, images in views.items():
                data = ImageSet(images, real_test.labels, real_test.class_names)
                predicted = predict(model, data, result.normalization, training).argmax(1)
                row[f"{view}_accuracy"] = (predicted == real_test.labels).double().mean().item()
            row["shape_bias"] = row["shape_accuracy"] / (row["shape_accuracy"] + row["texture_accuracy"])
            if cue_conflict is not None:
                predicted = predict(model, cue_conflict.images, result.normalization, training).argmax(1)
                bias = shape_bias(predicted, cue_conflict.images.labels, cue_conflict.texture_labels)
                row |= {f"cue_conflict_{k}": v for k, v in bias.items()}
            rows.append(row)
    return pd.DataFrame(rows)


def summarize_ablations(
    real_runs: pd.DataFrame, synthetic_runs: pd.DataFrame, views: pd.DataFrame, *factor_runs: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, dict[str, float]], plt.Figure, go.Figure]:
    """One row per factor, variant and training data: test accuracy mean ± 95% CI over seeds, the gap to the
    real-only baselines (``gap_pp``), and where both sources ran a variant, the gap between them under it; the
    accuracies drawn as a PNG's figure and an interactive one."""
    baselines = pd.concat(
        [real_runs.assign(trained_on=real_runs["cell"]), synthetic_runs.assign(trained_on=synthetic_runs["cell"])],
        ignore_index=True,
    )
    baselines = baselines.assign(factor="baseline", variant="standard")
    runs = pd.concat([baselines, *factor_runs], ignore_index=True)
    by = ["factor", "variant", "trained_on"]
    summary, metrics = summarize_runs(runs.assign(pipeline="ablations"), by=by)
    accuracy = summary.set_index(by)["test_accuracy_mean"]
    real = accuracy.get(("baseline", "standard", "real"), np.nan)
    summary["gap_pp"] = 100 * (real - summary["test_accuracy_mean"])
    pairs = {
        (f, v): accuracy.get((f, v, "real"), np.nan) - accuracy.get((f, v, "synthetic"), np.nan)
        for f, v in summary[["factor", "variant"]].itertuples(index=False)
    }
    variants = summary[["factor", "variant"]].itertuples(index=False)
    summary["gap_between_sources_pp"] = [100 * pairs[tuple(key)] for key in variants]
    if len(views):
        measured = [c for c in views.columns if c.endswith(("_accuracy", "_bias")) and c != "test_accuracy"]
        view_summary = summarize(views, by=["variant", "trained_on"], metrics=measured)
        summary = summary.merge(
            view_summary.drop(columns=["n"]).assign(
                factor=lambda t: np.where(t["variant"] == "standard", "baseline", "texture_shape")
            ),
            on=by,
            how="left",
        )
    for row in summary.itertuples():
        label = metric_name(f"{row.factor}.{row.variant}.{row.trained_on}")
        metrics[f"{label}.gap_pp"] = {"value": float(row.gap_pp), "step": 0}
    chart = ablations_chart(summary)
    metrics = {k: v for k, v in metrics.items() if np.isfinite(v["value"])}
    return summary, metrics, matplotlib_figure(chart), plotly_figure(chart)


def ablations_chart(summary: pd.DataFrame) -> BarChart:
    """Test accuracy of every row, grouped by factor, with the baselines as vertical lines."""
    groups = []
    for i, (factor, rows) in enumerate(summary.groupby("factor", sort=False)):
        labels = [f"{r.factor}: {r.variant} ({r.trained_on})" for r in rows.itertuples()]
        groups.append(
            Bars(
                factor,
                labels,
                rows["test_accuracy_mean"].astype(float).tolist(),
                [ci_or_zero(ci) for ci in rows["test_accuracy_ci95"]],
                f"C{i}",
            )
        )
    levels = []
    for source, style in (("real", "-"), ("synthetic", "--")):
        match = summary[(summary["factor"] == "baseline") & (summary["trained_on"] == source)]
        if len(match):
            mean, ci = match[["test_accuracy_mean", "test_accuracy_ci95"]].iloc[0]
            levels.append(Level(f"{source}-only", float(mean), ci_or_zero(ci), "k", style))
    low = np.nanmin(summary["test_accuracy_mean"]) if len(summary) else 0.0
    return BarChart(
        "Ablations: what each factor does to the gap",
        "test accuracy on real images (mean ± 95% CI over seeds)",
        groups,
        levels,
        (max(0.0, low - 0.1), 1.0),
        (8.0, 0.32 * len(summary) + 1.5),
    )
