"""The diversity of image sets as a trained student sees them: the within-class spread of each set's penultimate
features, and its share of the real training pool's."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mind_the_gap.analysis import distributions, representations
from mind_the_gap.analysis.cache import cached_table
from mind_the_gap.analysis.distributions import spread_sample, within_class_spread
from mind_the_gap.analysis.representations import unit_features
from mind_the_gap.data.imageset import ImageSet, ImageView
from mind_the_gap.devices import resolve_device
from mind_the_gap.experiments.study import Study, load_students, parent_keys
from mind_the_gap.training import engine
from mind_the_gap.training.student_cache import code_version


def measure_diversity(
    real_runs: pd.DataFrame,
    seed: int,
    set_keys: Mapping[str, Any],
    load_sets: Callable[[], Mapping[str, ImageSet]],
    study: Study,
    analyses: Path,
    spread_images: int,
) -> pd.DataFrame:
    """One row per set of ``load_sets()`` (the real training pool first): its within-class spread in the penultimate
    features of the real-trained student of ``seed`` in ``real_runs`` (over ``spread_images`` images per class),
    and its share of the first set's. Cached in ``analyses`` by the judge, ``set_keys`` (what identifies the sets:
    they are loaded only when the table is not there) and the settings."""
    parts = {
        "analysis": "measure_diversity",
        "code": code_version((distributions, representations, engine, sys.modules[__name__])),
        "spread_images": spread_images,
        "judge": parent_keys(real_runs, [seed], "real", "ablations.diversity")[seed],
        "sets": dict(set_keys),
    }

    def compute() -> pd.DataFrame:
        sets = load_sets()
        real = next(iter(sets.values()))
        judge, result = load_students(real_runs, [seed], "real", study, real)[seed]
        judge.to(resolve_device(study.training.device, allow_cpu=study.training.allow_cpu))

        def spread(images: ImageSet) -> float:
            sample = ImageView(((images, torch.cat(spread_sample(images.labels, spread_images))),))  # no copy
            penultimate = [judge.num_units - 2]
            batch_size = study.training.eval_batch_size
            features = unit_features(
                judge, sample, result.normalization, pooled=True, batch_size=batch_size, units=penultimate
            )
            return within_class_spread(features[0], sample.labels, spread_images)

        # Each set is read in turn and released once measured (no loop variable keeps it while the next is read).
        table = pd.DataFrame([{"set": name, "within_class_spread": spread(sets[name])} for name in sets])
        table["share_of_real"] = table["within_class_spread"] / table.loc[0, "within_class_spread"]
        return table

    return cached_table(analyses, parts, compute)
