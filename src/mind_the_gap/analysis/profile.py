"""Where real and synthetic differ inside the student, unit by unit, to set beside the layer-swap curve.

Per unit of the baseline students, mean ± 95% CI over seeds: the shift of BatchNorm input statistics between real
and synthetic images in the same real-trained student; linear CKA between real- and synthetic-trained students on
real test images, of the same seed and of different seeds, with real-vs-real students of different seeds as the
reference level (mean ± CI over pairs of students); linear probes on each unit's pooled features of real images.
And, for the whole network, the Fréchet distance between real and synthetic images in the real-trained students'
penultimate features.

Memory stays bounded whatever the number of images: the probes and the Fréchet distance read spatially pooled
features, and CKA is minibatch CKA (``representations.minibatch_cka``), which reduces each unit's full feature map
to an (n, n) matrix per minibatch inside the forward pass, so no unit's features for all images are ever held.
"""

from __future__ import annotations

import itertools
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from mind_the_gap.analysis import distributions, representations
from mind_the_gap.analysis.cache import cached_table
from mind_the_gap.analysis.distributions import frechet_distance
from mind_the_gap.analysis.representations import (
    batchnorm_input_moments,
    batchnorm_shift_per_unit,
    cka_batches,
    linear_probe_accuracy,
    minibatch_cka,
    unit_features,
    unit_grams,
)
from mind_the_gap.analysis.statistics import mean_ci95
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.devices import resolve_device
from mind_the_gap.experiments.study import SeedsConfig, Study, load_students, parent_keys
from mind_the_gap.models.architectures import UnitNet, unit_names
from mind_the_gap.training import engine
from mind_the_gap.training.engine import Normalization
from mind_the_gap.training.student_cache import StudentResult, code_version

log = logging.getLogger(__name__)

Pair = tuple[tuple[str, int], tuple[str, int]]  # two students, each (source, seed)


class ProfileConfig(SeedsConfig):
    """The seeds whose baseline students are profiled, and how many images each measure reads."""

    analysis_images: int = Field(
        2000, ge=4, description="images per source for activation statistics, CKA (4 at least), Fréchet"
    )
    probe_images: int = Field(2000, ge=2, description="real training and test images per linear probe")
    cka_batch_size: int = Field(
        256,
        ge=8,
        description="images per minibatch of minibatch CKA (unbiased HSIC, Nguyen et al. 2021): memory grows with "
        "its square, the estimate's noise shrinks with it",
    )


def spread(data: ImageSet, count: int) -> ImageSet:
    """``count`` images spread evenly over the set (every k-th): a sample without randomness to seed, and a view of
    the set, not a copy."""
    step = max(1, len(data) // count)
    return ImageSet(data.images[::step][:count], data.labels[::step][:count], data.class_names)


def cka_pairs(seeds: list[int]) -> dict[str, list[Pair]]:
    """Which students CKA compares: real vs synthetic of the same seed (they share initial weights and batch order,
    which alone makes them alike); real seed i vs synthetic seed j != i, which share neither; and, as the reference
    for the latter (how similar two students of the same data are), students of one source, seed i vs j != i.

    CKA is symmetric, so students of one source are compared once per pair of seeds; real i vs synthetic j and
    real j vs synthetic i are two different comparisons."""
    return {
        "cka_real_synthetic": [(("real", s), ("synthetic", s)) for s in seeds],
        "cka_real_synthetic_across_seeds": [
            (("real", a), ("synthetic", b)) for a, b in itertools.permutations(seeds, 2)
        ],
        "cka_real_real": [(("real", a), ("real", b)) for a, b in itertools.combinations(seeds, 2)],
        "cka_synthetic_synthetic": [(("synthetic", a), ("synthetic", b)) for a, b in itertools.combinations(seeds, 2)],
    }


def unit_profile(
    real_runs: pd.DataFrame,
    synthetic_runs: pd.DataFrame,
    real_train: ImageSet,
    synthetic_train: ImageSet,
    study: Study,
    config: ProfileConfig,
    analyses: Path,
) -> pd.DataFrame:
    """One row per unit of the baseline students of ``config.seeds`` (in ``real_runs`` and ``synthetic_runs``):
    ``<measure>_mean``, ``_ci95`` and ``_n`` (seeds or pairs of students) for ``bn_shift``, the ``cka_*`` pairs
    and the ``probe_*`` accuracies; and ``frechet_real_synthetic`` and ``frechet_real_train_test`` (real training
    vs real test images, the reference level), one value for the whole network on every row, with what it rests
    on: ``frechet_images`` (the fewest images of a set it compares) and ``frechet_dimensions`` (the feature width).

    Cached in ``analyses`` by the students' keys, the images' fingerprints, the settings and the code it runs."""
    students = {
        source: parent_keys(runs, config.seeds, source, "normalization")
        for source, runs in (("real", real_runs), ("synthetic", synthetic_runs))
    }
    key = {
        "analysis": "profile_units",
        "code": code_version((distributions, representations, engine, sys.modules[__name__])),
        "config": config.model_dump(mode="json"),
        "students": students,
        "data": [d.fingerprint() for d in (real_train, synthetic_train, study.test)],
    }
    test = study.test
    return cached_table(
        analyses,
        key,
        lambda: _profile(
            load_students(real_runs, config.seeds, "real", study, test),
            load_students(synthetic_runs, config.seeds, "synthetic", study, test),
            real_train,
            synthetic_train,
            study,
            config,
        ),
    )


Students = dict[int, tuple[UnitNet, StudentResult]]


def _profile(
    real_students: Students,
    synthetic_students: Students,
    real_train: ImageSet,
    synthetic_train: ImageSet,
    study: Study,
    config: ProfileConfig,
) -> pd.DataFrame:
    seeds, training, test = config.seeds, study.training, study.test
    device = resolve_device(training.device, allow_cpu=training.allow_cpu)
    real_sample = spread(real_train, config.analysis_images)
    synthetic_sample = spread(synthetic_train, config.analysis_images)
    test_sample = spread(test, config.analysis_images)
    probe_train = spread(real_train, config.probe_images)
    probe_test = spread(test, config.probe_images)

    def features(
        model: UnitNet, data: ImageSet, norm: Normalization, units: list[int] | None = None
    ) -> list[torch.Tensor]:
        return unit_features(
            model.to(device), data, norm, pooled=True, batch_size=training.eval_batch_size, units=units
        )

    def probes(model: UnitNet, norm: Normalization, seed: int) -> np.ndarray:
        """Per unit, a linear probe's accuracy on the model's features (released on return, before the next model's)."""
        train_x, test_x = features(model, probe_train, norm), features(model, probe_test, norm)
        labels = probe_train.labels.numpy(), probe_test.labels.numpy()
        return np.array(
            [
                linear_probe_accuracy(a.numpy(), labels[0], b.numpy(), labels[1], seed=seed)
                for a, b in zip(train_x, test_x, strict=True)
            ]
        )

    records: dict[str, list[np.ndarray]] = {}
    frechet, frechet_reference = [], []
    for seed in seeds:
        real_model, real_result = real_students[seed]
        norm = real_result.normalization
        shift = batchnorm_shift_per_unit(
            batchnorm_input_moments(real_model.to(device), real_sample, norm, training.eval_batch_size),
            batchnorm_input_moments(real_model, synthetic_sample, norm, training.eval_batch_size),
        )
        records.setdefault("bn_shift", []).append(shift)
        penultimate = [real_model.num_units - 2]  # the last block's pooled output: what the classifier reads
        real_features, synthetic_features, test_features = (
            features(real_model, sample, norm, penultimate)[0].double().numpy()
            for sample in (real_sample, synthetic_sample, test_sample)
        )
        frechet.append(frechet_distance(real_features, synthetic_features))
        frechet_reference.append(frechet_distance(real_features, test_features))
        for source, (model, result) in (("real", real_students[seed]), ("synthetic", synthetic_students[seed])):
            records.setdefault(f"probe_{source}", []).append(probes(model, result.normalization, seed))
    students = {
        (source, seed): (model.to(device), result.normalization)
        for source, by_seed in (("real", real_students), ("synthetic", synthetic_students))
        for seed, (model, result) in by_seed.items()
    }
    grams = (
        {key: unit_grams(model, test_sample.images[index], norm) for key, (model, norm) in students.items()}
        for index in cka_batches(len(test_sample), config.cka_batch_size)
    )
    pairs = cka_pairs(seeds)
    cka = minibatch_cka(grams, [pair for named in pairs.values() for pair in named])
    records |= {name: [cka[pair] for pair in named] for name, named in pairs.items() if named}
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
    table["frechet_images"] = min(len(real_sample), len(synthetic_sample), len(test_sample))
    table["frechet_dimensions"] = real_features.shape[1]
    log.info(
        "Fréchet distance in penultimate features: real-synthetic %.3f, real train-test %.3f",
        np.mean(frechet),
        np.mean(frechet_reference),
    )
    return table
