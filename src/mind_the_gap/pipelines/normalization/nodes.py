"""Normalization: do synthetic and real images differ in their statistics, and where in the student does it show?

- Input statistics: per-channel moments, intensity histograms (overall and per class), per-channel Wasserstein
  distances, and a Fréchet distance in the penultimate features of the real-trained students.
- A profile per unit, to set beside the layer-swap curve: the shift of BatchNorm input statistics between real and
  synthetic images in the same real-trained student; linear CKA between real- and synthetic-trained students on
  real test images (real-vs-real students of other seeds as the reference level); linear probes on each unit's
  pooled features of real images.
- Fixes through normalisation: synthetic students normalised with the synthetic set's statistics (at train and test
  time, or with each source's own), and AdaBN: BatchNorm statistics re-estimated on unlabelled real images.
"""

from __future__ import annotations

import itertools
import logging
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from pydantic import Field

from mind_the_gap.analysis import representations, statistics
from mind_the_gap.analysis.cache import cached_table
from mind_the_gap.analysis.representations import (
    batchnorm_input_moments,
    batchnorm_shift_per_unit,
    linear_cka,
    linear_probe_accuracy,
    unit_features,
)
from mind_the_gap.analysis.statistics import (
    channel_histograms,
    class_histograms,
    frechet_distance,
    histogram_moments,
    wasserstein_per_channel,
)
from mind_the_gap.charts import Curve, LineChart, Panel, table_curve
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.devices import resolve_device
from mind_the_gap.interactive import plotly_figure
from mind_the_gap.models.architectures import StudentConfig, UnitNet, unit_names
from mind_the_gap.models.units import format_units, resolve_units
from mind_the_gap.pipelines.student_runs import (
    SeedsConfig,
    StudentJob,
    load_students,
    parent_keys,
    summarize_runs,
    train_cell,
)
from mind_the_gap.reporting import matplotlib_figure, mean_ci95, summarize
from mind_the_gap.tracking import metric_name
from mind_the_gap.training import adapt, engine
from mind_the_gap.training.adapt import adapt_batchnorm
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.engine import Normalization, evaluate
from mind_the_gap.training.student_cache import code_version

log = logging.getLogger(__name__)


class NormalizationConfig(SeedsConfig):
    analysis_images: int = Field(2000, ge=2, description="images per source for activation statistics, CKA, Fréchet")
    probe_images: int = Field(2000, ge=2, description="real training and test images per linear probe")
    adabn_units: list[str] = Field(["all", "-3"], min_length=1, description="units adapted: all, or a unit range")


def _spread(data: ImageSet, count: int) -> ImageSet:
    """``count`` images spread evenly over the set (every k-th): a sample without randomness to seed."""
    step = max(1, len(data) // count)
    return data.subset(torch.arange(0, len(data), step)[:count])


def measure_input_statistics(
    real_train: ImageSet, synthetic_train: ImageSet
) -> tuple[pd.DataFrame, plt.Figure, dict[str, dict[str, float]]]:
    """Per class (and ``all``) and channel: each source's mean and standard deviation of pixel values (in [0, 1])
    and the Wasserstein distance between the two sources' pixel distributions; and their histograms."""
    real, synthetic = channel_histograms(real_train), channel_histograms(synthetic_train)
    real_classes, synthetic_classes = class_histograms(real_train), class_histograms(synthetic_train)
    rows = []
    for name, a, b in [
        ("all", real, synthetic),
        *zip(real_train.class_names, real_classes, synthetic_classes, strict=True),
    ]:
        (real_mean, real_std), (synthetic_mean, synthetic_std) = histogram_moments(a), histogram_moments(b)
        distance = wasserstein_per_channel(a, b) if a.sum() and b.sum() else np.full(len(a), np.nan)
        for channel in range(len(a)):
            rows.append(
                {
                    "class": name,
                    "channel": channel,
                    "real_mean": real_mean[channel],
                    "real_std": real_std[channel],
                    "synthetic_mean": synthetic_mean[channel],
                    "synthetic_std": synthetic_std[channel],
                    "wasserstein": distance[channel],
                }
            )
    table = pd.DataFrame(rows)
    overall = table[table["class"] == "all"]
    metrics = {
        f"input.{column}.channel{row.channel}": {"value": float(getattr(row, column)), "step": 0}
        for row in overall.itertuples()
        for column in ("real_mean", "real_std", "synthetic_mean", "synthetic_std", "wasserstein")
    }
    return table, histogram_figure(real, synthetic, real_classes, synthetic_classes, real_train.class_names), metrics


def histogram_figure(
    real: np.ndarray, synthetic: np.ndarray, real_classes: np.ndarray, synthetic_classes: np.ndarray, names
) -> plt.Figure:
    """Pixel-value densities of both sources: all images (first panel, per channel), then each class."""
    panels = 1 + len(names)
    cols = min(4, panels)
    rows = -(-panels // cols)
    figure, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    values = np.arange(256) / 255
    for ax in axes.flat:
        ax.axis("off")
    for index, (title, a, b) in enumerate(
        [("all images", real, synthetic), *zip(names, real_classes, synthetic_classes, strict=True)]
    ):
        ax = axes.flat[index]
        ax.axis("on")
        for channel in range(len(a)):
            suffix = f" ch{channel}" if len(a) > 1 else ""
            for counts, colour, label in ((a[channel], "C0", "real"), (b[channel], "C3", "synthetic")):
                density = counts / max(counts.sum(), 1)
                ax.plot(values, density, color=colour, lw=0.9, alpha=1 - 0.25 * channel, label=label + suffix)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=6)
        if index == 0:
            ax.legend(fontsize=6)
    figure.suptitle("Pixel values, real vs synthetic training images (log density)", fontsize=9)
    figure.tight_layout()
    return figure


def profile_units(
    real_runs: pd.DataFrame,
    synthetic_runs: pd.DataFrame,
    real_train: ImageSet,
    synthetic_train: ImageSet,
    real_test: ImageSet,
    store: Path,
    analyses: Path,
    student: StudentConfig,
    training: TrainConfig,
    normalization: NormalizationConfig,
) -> tuple[pd.DataFrame, plt.Figure, go.Figure, dict[str, dict[str, float]]]:
    """Per unit, mean ± 95% CI over seeds: the BatchNorm statistics shift, CKA and linear-probe accuracy (drawn as
    a PNG's figure and an interactive one); and the Fréchet distance between real and synthetic images in the
    real-trained students' penultimate features.

    Cached in ``analyses`` by the students' keys, the images' fingerprints, the settings and the code."""
    seeds = normalization.seeds
    parts = {
        "analysis": "profile_units",
        "code": _code(),
        "config": normalization.model_dump(mode="json"),
        "students": {
            source: parent_keys(runs, seeds, source, "normalization")
            for source, runs in (("real", real_runs), ("synthetic", synthetic_runs))
        },
        "data": [d.fingerprint() for d in (real_train, synthetic_train, real_test)],
    }
    inputs = (real_runs, synthetic_runs, real_train, synthetic_train, real_test, store, student, training)
    table = cached_table(analyses, parts, lambda: _profile(*inputs, normalization))
    metrics = {
        f"unit{row.unit}.{column}": {"value": float(getattr(row, column)), "step": 0}
        for row in table.itertuples()
        for column in table.columns
        if column.endswith("_mean") and not column.startswith("frechet") and pd.notna(getattr(row, column))
    }
    for name in ("frechet_real_synthetic", "frechet_real_train_test"):
        metrics[f"{name}_mean"] = {"value": float(table[f"{name}_mean"].iloc[0]), "step": 0}
    chart = profile_chart(table)
    return table, matplotlib_figure(chart), plotly_figure(chart), metrics


def _code() -> str:
    """The version of the code an analysis runs: its key changes with it."""
    return code_version((statistics, representations, adapt, engine, sys.modules[__name__]))


def _profile(
    real_runs: pd.DataFrame,
    synthetic_runs: pd.DataFrame,
    real_train: ImageSet,
    synthetic_train: ImageSet,
    real_test: ImageSet,
    store: Path,
    student: StudentConfig,
    training: TrainConfig,
    normalization: NormalizationConfig,
) -> pd.DataFrame:
    seeds = normalization.seeds
    real_students = load_students(real_runs, seeds, "real", store, student, real_test)
    synthetic_students = load_students(synthetic_runs, seeds, "synthetic", store, student, real_test)
    device = resolve_device(training.device)
    real_sample = _spread(real_train, normalization.analysis_images)
    synthetic_sample = _spread(synthetic_train, normalization.analysis_images)
    test_sample = _spread(real_test, normalization.analysis_images)
    probe_train = _spread(real_train, normalization.probe_images)
    probe_test = _spread(real_test, normalization.probe_images)

    def features(model: UnitNet, data: ImageSet, norm: Normalization, pooled: bool) -> list[torch.Tensor]:
        return unit_features(model.to(device), data, norm, pooled=pooled, batch_size=training.eval_batch_size)

    records: dict[str, list[np.ndarray]] = {}
    frechet, frechet_reference = [], []
    flat: dict[tuple[str, int], list[torch.Tensor]] = {}
    for seed in seeds:
        real_model, real_result = real_students[seed]
        norm = real_result.normalization
        shift = batchnorm_shift_per_unit(
            batchnorm_input_moments(real_model.to(device), real_sample, norm, training.eval_batch_size),
            batchnorm_input_moments(real_model, synthetic_sample, norm, training.eval_batch_size),
        )
        records.setdefault("bn_shift", []).append(shift)
        penultimate = -2  # the last block's pooled output: what the classifier reads
        real_features = features(real_model, real_sample, norm, pooled=True)[penultimate].double().numpy()
        synthetic_features = features(real_model, synthetic_sample, norm, pooled=True)[penultimate].double().numpy()
        test_features = features(real_model, test_sample, norm, pooled=True)[penultimate].double().numpy()
        frechet.append(frechet_distance(real_features, synthetic_features))
        frechet_reference.append(frechet_distance(real_features, test_features))
        for source, (model, result) in (("real", real_students[seed]), ("synthetic", synthetic_students[seed])):
            flat[(source, seed)] = features(model, test_sample, result.normalization, pooled=False)
            train_x = features(model, probe_train, result.normalization, pooled=True)
            test_x = features(model, probe_test, result.normalization, pooled=True)
            records.setdefault(f"probe_{source}", []).append(
                np.array(
                    [
                        linear_probe_accuracy(
                            a.numpy(), probe_train.labels.numpy(), b.numpy(), probe_test.labels.numpy(), seed=seed
                        )
                        for a, b in zip(train_x, test_x, strict=True)
                    ]
                )
            )
    for name, pairs in _cka_pairs(seeds).items():
        for (source_a, seed_a), (source_b, seed_b) in pairs:
            a, b = flat[(source_a, seed_a)], flat[(source_b, seed_b)]
            records.setdefault(name, []).append(np.array([linear_cka(x, y) for x, y in zip(a, b, strict=True)]))
    records["probe_gap"] = [r - s for r, s in zip(records["probe_real"], records["probe_synthetic"], strict=True)]

    names = unit_names(real_students[seeds[0]][0])
    table = pd.DataFrame({"unit": range(len(names)), "name": names})
    for name, values in records.items():
        per_unit = np.stack(values)  # (pairs or seeds, units)
        stats = [mean_ci95(column[~np.isnan(column)]) for column in per_unit.T]
        table[f"{name}_mean"], table[f"{name}_ci95"] = zip(*stats, strict=True)
        table[f"{name}_n"] = (~np.isnan(per_unit)).sum(0)
    for name, values in (("frechet_real_synthetic", frechet), ("frechet_real_train_test", frechet_reference)):
        mean, ci = mean_ci95(values)
        table[f"{name}_mean"], table[f"{name}_ci95"] = mean, ci  # one value for the whole network, on every row
    log.info(
        "Fréchet distance in penultimate features: real-synthetic %.3f, real train-test %.3f",
        np.mean(frechet),
        np.mean(frechet_reference),
    )
    return table


def _cka_pairs(seeds: list[int]) -> dict[str, list[tuple[tuple[str, int], tuple[str, int]]]]:
    """Which students CKA compares: real vs synthetic of the same seed, and students of one source across seeds
    (the reference: how similar two students of the same data are)."""
    across = list(itertools.combinations(seeds, 2))
    return {
        "cka_real_synthetic": [(("real", s), ("synthetic", s)) for s in seeds],
        "cka_real_real": [(("real", a), ("real", b)) for a, b in across],
        "cka_synthetic_synthetic": [(("synthetic", a), ("synthetic", b)) for a, b in across],
    }


def profile_chart(table: pd.DataFrame) -> LineChart:
    """Three panels over the units, with the layer-swap figure's unit axis: statistics shift, CKA, probes."""

    def curves(*lines: tuple[str, str, str, str]) -> list[Curve]:
        # A measure some runs lack (CKA across seeds, with one seed) is left out.
        return [
            table_curve(table, "unit", measure, label, colour, style)
            for measure, label, colour, style in lines
            if f"{measure}_mean" in table
        ]

    units = table["unit"].tolist()
    return LineChart(
        "Where real and synthetic differ inside the student, unit by unit",
        "unit",
        [
            Panel(
                "BatchNorm input shift\n(symmetric KL)",
                curves(("bn_shift", "real vs synthetic images in the real-trained student", "C2", "-")),
            ),
            Panel(
                "linear CKA on\nreal test images",
                curves(
                    ("cka_real_real", "real vs real student (other seed)", "C0", "-"),
                    ("cka_synthetic_synthetic", "synthetic vs synthetic student (other seed)", "C3", ":"),
                    ("cka_real_synthetic", "real vs synthetic student (same seed)", "C4", "--"),
                ),
            ),
            Panel(
                "linear probe accuracy\non real test images",
                curves(
                    ("probe_real", "real-trained student", "C0", "-"),
                    ("probe_synthetic", "synthetic-trained student", "C3", "-"),
                ),
            ),
        ],
        [(u, f"{u}\n{name}") for u, name in zip(units, table["name"], strict=True)],
        size=(8.0, 8.0),
    )


def train_with_synthetic_statistics(
    synthetic_train: ImageSet,
    val: ImageSet,
    test: ImageSet,
    store: Path,
    real_statistics: dict[str, list[float]],
    student: StudentConfig,
    training: TrainConfig,
    normalization: NormalizationConfig,
) -> pd.DataFrame:
    """Synthetic-only students normalised with the synthetic set's own statistics (at train and test time)."""
    recipe = training.model_copy(update={"normalization": "train"})
    jobs = [
        StudentJob(
            f"normalization/synthetic statistics/seed{seed}",
            seed,
            synthetic_train,
            columns={"statistics": "synthetic"},
            training=recipe,
        )
        for seed in normalization.seeds
    ]
    return train_cell(
        "normalization", "synthetic_statistics", jobs, val, test, store, student, training, real_statistics
    )


def compare_normalizations(
    real_runs: pd.DataFrame,
    synthetic_runs: pd.DataFrame,
    synthetic_statistics_runs: pd.DataFrame,
    real_train: ImageSet,
    real_test: ImageSet,
    store: Path,
    analyses: Path,
    real_statistics: dict[str, list[float]],
    student: StudentConfig,
    training: TrainConfig,
    normalization: NormalizationConfig,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, float]]]:
    """Test accuracy on real images, mean ± 95% CI over seeds, of synthetic-trained students under each
    normalisation and after AdaBN, with each one's gap to the real-only students; and the per-seed rows.

    Variants: the baselines (real statistics everywhere); synthetic statistics at train and test time; each
    source's own (the synthetic-statistics students tested on real images normalised with real statistics); and
    the baseline synthetic students after AdaBN on unlabelled real training images, for every ``adabn_units``.
    The per-seed rows are cached in ``analyses`` by the students' keys, the images and the settings.
    """
    seeds = normalization.seeds
    runs = {"real": real_runs, "synthetic": synthetic_runs, "synthetic-statistics": synthetic_statistics_runs}
    parts = {
        "analysis": "compare_normalizations",
        "code": _code(),
        "config": normalization.model_dump(mode="json"),
        "students": {source: parent_keys(rows, seeds, source, "normalization") for source, rows in runs.items()},
        "data": [real_train.fingerprint(), real_test.fingerprint()],
        "real_statistics": real_statistics,
    }
    per_seed = cached_table(
        analyses,
        parts,
        lambda: _per_seed(
            real_runs,
            synthetic_runs,
            synthetic_statistics_runs,
            real_train,
            real_test,
            store,
            real_statistics,
            student,
            training,
            normalization,
        ),
    )
    return _summarize_variants(per_seed)


def _per_seed(
    real_runs: pd.DataFrame,
    synthetic_runs: pd.DataFrame,
    synthetic_statistics_runs: pd.DataFrame,
    real_train: ImageSet,
    real_test: ImageSet,
    store: Path,
    real_statistics: dict[str, list[float]],
    student: StudentConfig,
    training: TrainConfig,
    normalization: NormalizationConfig,
) -> pd.DataFrame:
    seeds = normalization.seeds
    real = Normalization(tuple(real_statistics["mean"]), tuple(real_statistics["std"]))
    device = resolve_device(training.device)
    rows = []

    def add(variant: str, description: str, seed: int, accuracy: float) -> None:
        rows.append({"variant": variant, "description": description, "seed": seed, "test_accuracy": accuracy})

    for r in real_runs[real_runs["seed"].isin(seeds)].itertuples():
        add("real", "real-only, real statistics", r.seed, r.test_accuracy)
    for seed, (_, result) in load_students(synthetic_runs, seeds, "synthetic", store, student, real_test).items():
        add("synthetic", "synthetic-only, real statistics (the baselines)", seed, result.test.top1)
        for units in normalization.adabn_units:
            model, _ = load_students(synthetic_runs, [seed], "synthetic", store, student, real_test)[seed]
            spec = None if units == "all" else units
            label = "all" if spec is None else format_units(resolve_units(model, spec))
            adapt_batchnorm(model.to(device), real_train, result.normalization, spec, training.eval_batch_size)
            add(
                f"adabn_{label}",
                f"synthetic-only, then AdaBN on real training images (units {label})",
                seed,
                evaluate(model, real_test, result.normalization, training).top1,
            )
    own = load_students(synthetic_statistics_runs, seeds, "synthetic-statistics", store, student, real_test)
    for seed, (model, result) in own.items():
        add("synthetic_statistics", "synthetic-only, synthetic statistics at train and test", seed, result.test.top1)
        add(
            "own_statistics",
            "synthetic-only, synthetic statistics at train, real at test",
            seed,
            evaluate(model.to(device), real_test, real, training).top1,
        )
    return pd.DataFrame(rows)


def _summarize_variants(per_seed: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, float]]]:
    # Paired by seed: AdaBN changes the very student of its seed, so its change is measured against that student.
    synthetic = per_seed[per_seed["variant"] == "synthetic"].set_index("seed")["test_accuracy"]
    per_seed["change_pp"] = 100 * (per_seed["test_accuracy"] - per_seed["seed"].map(synthetic))
    summary, metrics = summarize_runs(
        per_seed.assign(pipeline="normalization"), by=["variant", "description"], label=["variant"]
    )
    reference = summary.set_index("variant")["test_accuracy_mean"].get("real", np.nan)
    summary["gap_pp"] = 100 * (reference - summary["test_accuracy_mean"])
    changes = summarize(per_seed, by=["variant"], metrics=["change_pp"]).drop(columns="n")
    names = {"change_pp_mean": "change_vs_synthetic_pp", "change_pp_ci95": "change_vs_synthetic_pp_ci95"}
    summary = summary.merge(changes.rename(columns=names), on="variant")
    for row in summary.itertuples():
        metrics[metric_name(f"{row.variant}.gap_pp")] = {"value": float(row.gap_pp), "step": 0}
        if pd.notna(row.change_vs_synthetic_pp):
            metrics[metric_name(f"{row.variant}.change_vs_synthetic_pp")] = {
                "value": float(row.change_vs_synthetic_pp),
                "step": 0,
            }
    return summary, per_seed, metrics
