"""Ablations: the other suspects for the gap, each a factor whose variants train students over the seeds.

- augmentation: no augmentation or a strong policy instead of the standard crop and flip, for both sources.
- texture_shape: a training variant that pushes toward shape (local pixel shuffles), for both sources; every
  student tested on shape-only (edges) and texture-only (patch-shuffled) views of the real test set, and on blurred,
  noisy and lower-contrast views, the controls that tell reliance on texture from general brittleness.
- oracle (the pipeline's namespace for sets conditioned on real training images), two factors:
  - reconstruction: img2img from real training images at several strengths, each synthetic image a real one noised
    and denoised by the generation's own model; the reconstruction dial of "On the Limitation of Diffusion Models
    for Synthesizing Training Datasets" (arXiv 2311.13090), from near-copies of real images to class-only samples.
  - oracle: Stable unCLIP conditioned on each real image's embedding, the paper's oracle (``oracle.unclip``).
- diversity: synthetic sets generated at several guidance scales (more guidance, less variety), each with its
  diversity, its synthetic-only students and the two key layer-swap students (first or last units learned from real).
- mixing: real and synthetic images mixed at a fixed total size, and all real images plus the synthetic set.

Variants that equal a baseline (standard augmentation, the generation's own guidance scale, real shares 0 and 1)
reuse the baseline students from the store.

Jobs name their data: the stored sets ``real_train`` and ``synthetic_train`` (``SETS``), and for the sets generated
in the oracle and diversity namespaces each variant's set under the variant's name (``strength 0.5``, ``unclip``,
``guidance 2``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator

from mind_the_gap.analysis import fidelity, per_class, texture_shape
from mind_the_gap.analysis.statistics import by_seed, holm, paired_columns, paired_difference, with_holm
from mind_the_gap.analysis.statistics import summarize as summarize_metrics
from mind_the_gap.analysis.texture_shape import VIEWS, ViewsConfig
from mind_the_gap.config import Config
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.data.prepare import nested_subset_indices
from mind_the_gap.experiments.study import (
    SeedsConfig,
    SetsOnDemand,
    SetView,
    StudentJob,
    Study,
    as_metrics,
    parent_keys,
    summarize_runs,
    train_cell,
    views,
)
from mind_the_gap.generators.config import GenerationConfig
from mind_the_gap.generators.synthesis import SetShape, generate_set, load_set
from mind_the_gap.models.architectures import StudentConfig, student_unit_names
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.transfer import Transfer, TransferConfig

Source = Literal["real", "synthetic"]
Policy = Literal["none", "rand_augment", "trivial_augment", "auto_augment"]
SETS: dict[Source, str] = {"real": "real_train", "synthetic": "synthetic_train"}  # each source's stored set
UNCLIP = "unclip"  # the oracle's set; the reconstruction's are named by their strength
PER_SOURCE = ", BN per source"  # a mixing variant's suffix where each source has its own BatchNorm statistics
GENERATION_SET = "synthetic (generation)"  # the synthetic baselines' set, among the sets whose fidelity is measured


class AugmentationAblation(Config):
    policies: list[Policy] = Field(
        ["none", "rand_augment", "trivial_augment", "auto_augment"],
        description="none, or a strong policy on top of the standard crop and flip",
    )
    sources: list[Source] = ["real", "synthetic"]


class TextureShapeAblation(ViewsConfig):
    sources: list[Source] = ["real", "synthetic"]


class OracleAblation(Config):
    """The sets conditioned on real training images: the reconstruction dial (img2img from them) and the oracle."""

    reconstruction_strengths: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        [0.1, 0.25, 0.5, 0.75],
        description="img2img from real training images: 0 would be the real image itself, 1 pure noise",
    )
    unclip: bool = Field(False, description="the oracle: Stable unCLIP conditioned on each real image (its weights)")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "strengths" in data:
            raise ValueError(
                "ablations.oracle.strengths is now ablations.oracle.reconstruction_strengths (img2img from real "
                "training images is a reconstruction, not the oracle)"
            )
        return data


class DiversityAblation(Config):
    guidance_scales: list[Annotated[float, Field(ge=0)]] = [1.0, 2.0, 4.0, 8.0]
    spread_images: int = Field(
        256, ge=2, description="images a class of each set measured (and the real reference's), for fidelity and spread"
    )
    neighbours: int = Field(5, ge=1, description="k of the k-nearest-neighbour manifolds (precision ... coverage)")
    first_units: int = Field(3, ge=1, description="layer swap: the first units learned from real, the rest kept")
    last_units: int = Field(3, ge=1, description="layer swap: the last units learned from real, the rest kept")

    @model_validator(mode="after")
    def _neighbours_within_the_sample(self) -> DiversityAblation:
        if self.neighbours >= self.spread_images:
            raise ValueError(
                f"ablations.diversity.neighbours ({self.neighbours}) must be below spread_images ({self.spread_images})"
            )
        return self


class MixingAblation(Config):
    real_shares: list[Annotated[float, Field(gt=0, lt=1)]] = Field(
        [0.1, 0.25, 0.5], description="at the real pool's size; 0 and 1 are the baselines"
    )
    add_synthetic: bool = Field(True, description="also every real image plus the whole synthetic set")
    batchnorm: list[Literal["shared", "per_source"]] = Field(
        ["shared", "per_source"],
        min_length=1,
        description="BatchNorm statistics shared by both sources, or each source's own (the real ones tested)",
    )


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
    train: tuple[SetView, ...],
    sets: Mapping[str, ImageSet],
    real_images: int | None = None,
    **extra: Any,
) -> StudentJob:
    size = sum(view.size(sets) for view in train)
    columns = {"factor": factor, "variant": variant, "trained_on": trained_on, "train_images": size}
    if real_images is not None:
        columns["real_images"] = real_images
    name = f"ablations/{factor}/{variant}/{trained_on}/seed{seed}"
    return StudentJob(name, seed, train, columns=columns, **extra)


def plan_augmentation(sets: Mapping[str, ImageSet], training: TrainConfig, config: AblationsConfig) -> list[StudentJob]:
    """Students of each source with no augmentation, or with a strong policy added to the standard one."""
    jobs = []
    for policy in config.augmentation.policies:
        augment = [] if policy == "none" else [*training.augment, policy]
        recipe = training.model_copy(update={"augment": augment})
        jobs += [
            _job("augmentation", policy, source, seed, views(SETS[source]), sets, training=recipe)
            for source in config.augmentation.sources
            for seed in config.seeds
        ]
    return jobs


def plan_texture_shape(
    sets: Mapping[str, ImageSet], training: TrainConfig, config: AblationsConfig
) -> list[StudentJob]:
    """Students of each source trained with local pixel shuffles on top of the standard augmentation."""
    recipe = training.model_copy(update={"augment": [*training.augment, "local_shuffle"]})
    return [
        _job("texture_shape", "local_shuffle", source, seed, views(SETS[source]), sets, training=recipe)
        for source in config.texture_shape.sources
        for seed in config.seeds
    ]


def oracle_generations(generation: GenerationConfig, config: AblationsConfig) -> dict[str, GenerationConfig]:
    """Per set of the oracle namespace, its generation: per reconstruction strength, each image denoised from a
    real training image of its class noised to that strength by the generation's own model (the offline generator,
    or Stable Diffusion); with ``unclip``, the oracle, each image from Stable unCLIP's embedding of the real image."""
    offline = generation.backend == "class_diffusion" or (
        generation.backend == "img2img" and generation.img2img_model == "class_diffusion"
    )
    model = "class_diffusion" if offline else "stable_diffusion"
    configs = {
        f"strength {s:g}": generation.model_copy(update={"backend": "img2img", "img2img_model": model, "strength": s})
        for s in config.oracle.reconstruction_strengths
    }
    if config.oracle.unclip:
        configs[UNCLIP] = generation.model_copy(update={"backend": "unclip"})
    return configs


def diversity_generations(generation: GenerationConfig, config: AblationsConfig) -> dict[str, GenerationConfig]:
    """Per guidance scale, the generation as the generation pipeline makes it otherwise (the generation's own scale
    gives its very images, reused from disk)."""
    return {
        f"guidance {g:g}": generation.model_copy(update={"guidance_scale": g}) for g in config.diversity.guidance_scales
    }


def generate_variants(
    generations: Mapping[str, GenerationConfig], generator_model: dict[str, Any], real_train: ImageSet, output_dir: Path
) -> pd.DataFrame:
    """Every variant's images, generated (or reused) into ``output_dir``: one manifest with a ``variant`` column."""
    manifests = []
    for variant, generation in generations.items():
        manifest, _ = generate_set(generation, generator_model, SetShape.of(real_train), output_dir, real_train)
        manifests.append(manifest.assign(variant=variant))
    return pd.concat(manifests, ignore_index=True) if manifests else pd.DataFrame(columns=["variant"])


def load_variants(
    manifest: pd.DataFrame, output_dir: Path, real_train: ImageSet, generation: GenerationConfig
) -> SetsOnDemand:
    """Each variant's generated set, in the manifest's order of variants, read from disk when a student needs it."""
    groups = dict(list(manifest.groupby("variant", sort=False)))
    loaders = {variant: partial(load_set, rows, output_dir, real_train, generation) for variant, rows in groups.items()}
    return SetsOnDemand(loaders, {variant: len(rows) for variant, rows in groups.items()})


def _diversity_sets(
    manifest: pd.DataFrame,
    output_dir: Path,
    generation: GenerationConfig,
    real_train: ImageSet,
    synthetic_train: ImageSet,
) -> tuple[dict[str, Any], Callable[[], Mapping[str, ImageSet]]]:
    """The sets whose diversity is measured: what identifies each (the generated ones by their generation's run key
    and size), and how to load them all, the real training pool first (the generated ones are read from disk only
    when the measurement is not cached)."""
    generated = {variant: [rows["run_key"].iloc[0], len(rows)] for variant, rows in manifest.groupby("variant")}
    keys = {"real": real_train.fingerprint(), "synthetic": synthetic_train.fingerprint(), **generated}

    def load() -> Mapping[str, ImageSet]:
        variants = load_variants(manifest, output_dir, real_train, generation)
        return variants.after({"real": real_train, GENERATION_SET: synthetic_train})

    return keys, load


def plan_oracle(variants: Mapping[str, ImageSet], config: AblationsConfig) -> list[StudentJob]:
    """Synthetic-only students on each set of the oracle namespace: the unCLIP set's of the factor oracle, each
    reconstruction strength's of the factor reconstruction."""
    return [
        _job("oracle" if variant == UNCLIP else "reconstruction", variant, "synthetic", seed, views(variant), variants)
        for variant in variants
        for seed in config.seeds
    ]


def plan_diversity(
    variants: Mapping[str, ImageSet], student: StudentConfig, config: AblationsConfig
) -> list[StudentJob]:
    """Synthetic-only students on each guidance scale's set (the parents of ``plan_diversity_swaps``' students)."""
    num_units, units = len(student_unit_names(student)), config.diversity
    if units.first_units >= num_units or units.last_units >= num_units:
        raise ValueError(
            f"ablations.diversity.first_units and last_units must leave a unit kept: the student has {num_units}"
        )
    return [
        _job("diversity", variant, "synthetic", seed, views(variant), variants)
        for variant in variants
        for seed in config.seeds
    ]


def plan_diversity_swaps(
    runs: pd.DataFrame,
    variants: Iterable[str],
    sets: Mapping[str, ImageSet],
    student: StudentConfig,
    config: AblationsConfig,
) -> list[StudentJob]:
    """Per guidance scale, from each of ``plan_diversity``'s students (in ``runs``) the two key layer-swap students:
    the first or the last units trained on ``real_train`` and the rest kept from the synthetic student."""
    num_units, units = len(student_unit_names(student)), config.diversity
    transfer = TransferConfig.model_validate(config.model_dump(include=set(TransferConfig.model_fields)))
    swaps = {
        f"first {units.first_units} real": f"{units.first_units}-{num_units - 1}",
        f"last {units.last_units} real": f"0-{num_units - units.last_units - 1}",
    }
    jobs = []
    for variant in variants:
        parents = parent_keys(runs[runs["variant"] == variant], config.seeds, "synthetic", "ablations.diversity")
        for label, kept in swaps.items():
            jobs += [
                _job(
                    "diversity",
                    variant,
                    f"{label}, rest synthetic",
                    seed,
                    views(SETS["real"]),
                    sets,
                    transfer=Transfer(parents[seed], kept, transfer),
                )
                for seed in config.seeds
            ]
    return jobs


def plan_mixing(sets: Mapping[str, ImageSet], training: TrainConfig, config: AblationsConfig) -> list[StudentJob]:
    """Students on real and synthetic images mixed at the real pool's size (stratified subsets, the real one then
    the synthetic one drawn from one generator per seed and share), and on every real image plus the whole synthetic
    set; each with BatchNorm statistics shared by the sources, and with each source's own (``PER_SOURCE``)."""
    real_set, synthetic_set = SETS["real"], SETS["synthetic"]
    real_train, synthetic_train = sets[real_set], sets[synthetic_set]
    mixed = []
    for seed in config.seeds:
        for share in config.mixing.real_shares:
            generator = torch.Generator().manual_seed(seed)
            real = nested_subset_indices(real_train.labels, real_train.num_classes, [share], generator)[share]
            # The synthetic part fills the rest of the real pool's size, whatever the synthetic set's own size.
            fraction = (len(real_train) - len(real)) / len(synthetic_train)
            if fraction > 1:
                raise ValueError(
                    f"ablations.mixing: a real share of {share} needs {len(real_train) - len(real)} "
                    f"synthetic images, the synthetic set has {len(synthetic_train)}"
                )
            labels, num_classes = synthetic_train.labels, synthetic_train.num_classes
            synthetic = nested_subset_indices(labels, num_classes, [fraction], generator)[fraction]
            train = (SetView(real_set, real), SetView(synthetic_set, synthetic))
            mixed.append((f"{share:.0%} real", seed, train, len(real)))
        if config.mixing.add_synthetic:
            mixed.append(
                ("all real + all synthetic", seed, (SetView(real_set), SetView(synthetic_set)), len(real_train))
            )
    recipes = {"shared": None, "per_source": training.model_copy(update={"batchnorm": "per_source"})}
    suffixes = {"shared": "", "per_source": PER_SOURCE}
    return [
        _job(
            "mixing",
            variant + suffixes[batchnorm],
            "real + synthetic",
            seed,
            train,
            sets,
            real_images=real,
            training=recipes[batchnorm],
        )
        for batchnorm in config.mixing.batchnorm
        for variant, seed, train, real in mixed
    ]


def pools(real_train: ImageSet, synthetic_train: ImageSet) -> dict[str, ImageSet]:
    """The real pool and the synthetic set under the names the factors' jobs give them."""
    return {SETS["real"]: real_train, SETS["synthetic"]: synthetic_train}


def plan_on_pools(
    factor: str, sets: Mapping[str, ImageSet], training: TrainConfig, config: AblationsConfig
) -> list[StudentJob]:
    """The students of a factor that trains on the pools as they are: augmentation, texture_shape or mixing."""
    plans = {
        "augmentation": lambda: plan_augmentation(sets, training, config),
        "texture_shape": lambda: plan_texture_shape(sets, training, config),
        "mixing": lambda: plan_mixing(sets, training, config),
    }
    return plans[factor]()


def variant_generations(
    factor: str, generation: GenerationConfig, config: AblationsConfig
) -> dict[str, GenerationConfig]:
    """The generation settings of each variant of a factor that generates its sets: oracle or diversity."""
    return {"oracle": oracle_generations, "diversity": diversity_generations}[factor](generation, config)


def train_diversity(
    variants: SetsOnDemand, real_train: ImageSet, study: Study, config: AblationsConfig
) -> pd.DataFrame:
    """Per guidance scale: synthetic-only students, then from each the two key layer-swap students, the first or
    the last units trained on real images and the rest kept from the synthetic student."""
    sets = variants.after({SETS["real"]: real_train})
    runs = train_cell(study, "ablations", "diversity", plan_diversity(variants, study.student, config), sets)
    swaps = plan_diversity_swaps(runs, variants, sets, study.student, config)
    return pd.concat([runs, train_cell(study, "ablations", "diversity", swaps, sets)], ignore_index=True)


def _texture_shape_groups(
    real_runs: pd.DataFrame, synthetic_runs: pd.DataFrame, texture_shape_runs: pd.DataFrame
) -> list[tuple[str, str, pd.DataFrame]]:
    """The students the texture-vs-shape views test, as (variant, trained_on, runs): the baselines (standard) and
    the texture-shape factor's (local_shuffle) of each source."""
    groups = [("standard", "real", real_runs), ("standard", "synthetic", synthetic_runs)]
    if texture_shape_runs.empty:  # the factor is off
        return groups
    return groups + [("local_shuffle", source, rows) for source, rows in texture_shape_runs.groupby("trained_on")]


def evaluate_texture_shape(
    real_runs: pd.DataFrame,
    synthetic_runs: pd.DataFrame,
    texture_shape_runs: pd.DataFrame,
    study: Study,
    analyses: Path,
    config: AblationsConfig,
) -> pd.DataFrame:
    """Every baseline and texture-shape student on the real test set, its shape-only and texture-only views, the
    blur, noise and contrast controls and, where given, cue-conflict images: accuracy on each and the shape bias."""
    groups = _texture_shape_groups(real_runs, synthetic_runs, texture_shape_runs)
    return texture_shape.texture_shape_views(groups, config.seeds, study, analyses, config.texture_shape)


def measure_sets(
    manifest: pd.DataFrame,
    output_dir: Path,
    generation: GenerationConfig,
    real_train: ImageSet,
    synthetic_train: ImageSet,
    real_runs: pd.DataFrame,
    study: Study,
    analyses: Path,
    config: AblationsConfig,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, float]]]:
    """Each set's fidelity and diversity in every real-trained student's penultimate features (recognisability,
    within-class spread, precision, recall, density, coverage): per set over the judges, per judge and class, and
    the per-set summary as metrics."""
    keys, load = _diversity_sets(manifest, output_dir, generation, real_train, synthetic_train)
    units = config.diversity
    by_class = fidelity.measure_sets(
        real_runs, config.seeds, keys, load, study, analyses, units.spread_images, units.neighbours
    )
    summary = fidelity.summarize_sets(by_class)
    return summary, by_class, as_metrics(fidelity.summary_values(summary))


def measure_per_class_gaps(
    real_runs: pd.DataFrame, synthetic_runs: pd.DataFrame, judged: pd.DataFrame, study: Study
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each class's real-vs-synthetic gap of the baseline students, paired by seed, beside the judges' measures of
    the generation's synthetic images of the class; and the rank correlations between them."""
    table = per_class.per_class_gaps(
        per_class.per_class_accuracy(real_runs, study),
        per_class.per_class_accuracy(synthetic_runs, study),
        list(study.test.class_names),
        judged,
        GENERATION_SET,
    )
    return table, per_class.rank_correlations(table)


def view_comparisons(texture_shape_views: pd.DataFrame) -> pd.DataFrame:
    """One row per variant whose students of both sources were tested on the views: on each view of the test set
    (``texture_shape.VIEWS``), the real students' accuracy above the synthetic ones' (``<view>_between_sources_pp``)
    and how far that exceeds their gap on the test set itself (``<view>_extra_gap_pp``), each the mean of per-seed
    differences in points ± 95% CI with its p-value; the extra gaps' p Holm-corrected as one family, every view of
    every variant (``<view>_extra_gap_pp_p_holm``).

    An extra gap on the shape view with none on the controls points to texture; one on every view, to brittleness.
    """
    rows = []
    for variant, students in texture_shape_views.groupby("variant", sort=False):
        sources = dict(list(students.groupby("trained_on")))
        if not {"real", "synthetic"} <= set(sources):
            continue
        real, synthetic = sources["real"], sources["synthetic"]
        test_gap = np.subtract(*by_seed(real, synthetic))
        row: dict[str, Any] = {"variant": variant}
        for view in VIEWS:
            real_view, synthetic_view = by_seed(real, synthetic, metric=f"{view}_accuracy")
            row |= paired_columns(f"{view}_between_sources_pp", paired_difference(real_view, synthetic_view))
            row |= paired_columns(f"{view}_extra_gap_pp", paired_difference(real_view - synthetic_view, test_gap))
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["variant"])
    table = pd.DataFrame(rows)
    names = [f"{view}_extra_gap_pp" for view in VIEWS]
    corrected = np.reshape(holm(table[[f"{name}_p" for name in names]].to_numpy().ravel().tolist()), (len(table), -1))
    return table.assign(**{f"{name}_p_holm": corrected[:, i] for i, name in enumerate(names)})


def _with_factor(views_table: pd.DataFrame) -> pd.DataFrame:
    """A table of the texture-shape views with the factor of each variant: the baselines' (standard) or its own."""
    return views_table.assign(factor=np.where(views_table["variant"] == "standard", "baseline", "texture_shape"))


def summarize(
    real_runs: pd.DataFrame,
    synthetic_runs: pd.DataFrame,
    texture_shape_views: pd.DataFrame,
    factor_runs: Iterable[pd.DataFrame],
) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """One row per factor, variant and training data: test accuracy mean ± 95% CI over seeds, its comparisons, and
    the texture-vs-shape views' accuracies.

    Comparisons are paired by seed, each the mean of per-seed differences in points ± 95% CI, with its p-value:
    ``gap_pp``, below the real-only baseline student; ``vs_baseline_pp``, gained over the baseline student of the
    same source (rows trained on one source), Holm-corrected over every such row of the table (one family) in
    ``vs_baseline_pp_p_holm``; ``gap_between_sources_pp``, where both sources ran a variant, its real student above
    its synthetic one. Where the texture-shape views ran: each view's accuracies, and per variant of both sources
    ``view_comparisons``' columns on both its rows.
    """
    baselines = pd.concat(
        [real_runs.assign(trained_on=real_runs["cell"]), synthetic_runs.assign(trained_on=synthetic_runs["cell"])],
        ignore_index=True,
    )
    baselines = baselines.assign(factor="baseline", variant="standard")
    runs = pd.concat([baselines, *factor_runs], ignore_index=True)
    by = ["factor", "variant", "trained_on"]
    summary, metrics = summarize_runs(runs.assign(pipeline="ablations"), by=by)
    groups = {key: rows for key, rows in runs.groupby(by, sort=False)}
    source_baselines = {source: groups.get(("baseline", "standard", source)) for source in SETS}
    comparisons = []
    for factor, variant, trained_on in summary[by].itertuples(index=False):
        students = groups[factor, variant, trained_on]
        columns: dict[str, float] = {}
        if source_baselines["real"] is not None:
            columns |= paired_columns("gap_pp", paired_difference(*by_seed(source_baselines["real"], students)))
        baseline = source_baselines.get(trained_on)
        if baseline is not None and factor != "baseline":
            columns |= paired_columns("vs_baseline_pp", paired_difference(*by_seed(students, baseline)))
        shared = groups.get((factor, variant.removesuffix(PER_SOURCE), trained_on))
        if variant.endswith(PER_SOURCE) and shared is not None:
            columns |= paired_columns("vs_shared_bn_pp", paired_difference(*by_seed(students, shared)))
        real, synthetic = groups.get((factor, variant, "real")), groups.get((factor, variant, "synthetic"))
        if real is not None and synthetic is not None:
            difference = paired_difference(*by_seed(real, synthetic))
            columns |= paired_columns("gap_between_sources_pp", difference)
        comparisons.append(columns)
    summary = pd.concat([summary, pd.DataFrame(comparisons, index=summary.index)], axis=1)
    # Both columns in every table, NaN where nothing was compared.
    summary = summary.assign(**{name: summary.get(name, np.nan) for name in ("gap_pp", "gap_between_sources_pp")})
    if "vs_baseline_pp_p" in summary:
        summary = with_holm(summary, "vs_baseline_pp")
    if len(texture_shape_views):
        columns = texture_shape_views.columns
        measured = [c for c in columns if c.endswith(("_accuracy", "_bias")) and c != "test_accuracy"]
        view_summary = summarize_metrics(texture_shape_views, by=["variant", "trained_on"], metrics=measured)
        summary = summary.merge(_with_factor(view_summary.drop(columns=["n"])), on=by, how="left")
        summary = summary.merge(
            _with_factor(view_comparisons(texture_shape_views)), on=["factor", "variant"], how="left"
        )
    compared = {
        f"{row.factor}.{row.variant}.{row.trained_on}.{name}": getattr(row, name, None)
        for row in summary.itertuples()
        for name in ("gap_pp", "vs_baseline_pp")
    }
    return summary, metrics | as_metrics(compared)
