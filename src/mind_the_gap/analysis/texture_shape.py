"""Texture or shape: trained students on shape-only (edges) and texture-only (patch-shuffled) views of the real test
set and, where given, on Geirhos et al.'s cue-conflict images, with each student's shape bias."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd
import torch

from mind_the_gap.analysis.cache import cached_table
from mind_the_gap.data import views
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.data.views import edge_view, load_cue_conflict, patch_shuffled, shape_bias
from mind_the_gap.experiments.study import Study, load_students, parent_keys
from mind_the_gap.training import engine
from mind_the_gap.training.engine import Normalization, predict
from mind_the_gap.training.student_cache import code_version

# A group of students: the variant they were trained under, their source, and their cell's runs table.
Group = tuple[str, str, pd.DataFrame]


def texture_shape_views(
    groups: Sequence[Group],
    seeds: Iterable[int],
    study: Study,
    analyses: Path,
    texture_grid: int,
    cue_conflict_dir: str | None,
) -> pd.DataFrame:
    """One row per student of ``groups`` and seed: its accuracy on the study's test set, on its shape-only and
    texture-only views (``texture_grid`` patches per side) and, with ``cue_conflict_dir``, its cue-conflict shape
    bias. Cached in ``analyses`` by the students, the test set, the settings and the cue-conflict folder's files."""
    seeds = list(seeds)
    folder = Path(cue_conflict_dir) if cue_conflict_dir is not None else None
    files = (
        sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file())
        if folder is not None and folder.is_dir()
        else None
    )
    parts = {
        "analysis": "texture_shape_views",
        "code": code_version((views, engine, sys.modules[__name__])),
        "test": study.test.fingerprint(),
        "texture_grid": texture_grid,
        "cue_conflict_dir": cue_conflict_dir,
        "cue_conflict_files": files,
        "students": [
            [variant, source, parent_keys(rows, seeds, source, "ablations.texture_shape")]
            for variant, source, rows in groups
        ],
    }
    return cached_table(analyses, parts, lambda: _evaluate(groups, seeds, study, texture_grid, cue_conflict_dir))


def _evaluate(
    groups: Sequence[Group], seeds: list[int], study: Study, texture_grid: int, cue_conflict_dir: str | None
) -> pd.DataFrame:
    test = study.test
    # Each view is made when a student is tested on it and released after: one view of the test set at a time.
    test_views = {
        "shape": edge_view,
        "texture": lambda images: patch_shuffled(images, texture_grid, torch.Generator().manual_seed(0)),
    }
    cue_conflict = None
    if cue_conflict_dir is not None:
        cue_conflict = load_cue_conflict(cue_conflict_dir, test.class_names, test.image_size[0], test.channels)
    rows = []
    for variant, source, runs in groups:
        for seed, (model, result) in load_students(runs, seeds, source, study, test).items():
            row = {"variant": variant, "trained_on": source, "seed": seed, "test_accuracy": result.test.top1}
            for view, make in test_views.items():
                row[f"{view}_accuracy"] = _accuracy(model, result.normalization, test, make, study)
            row["shape_bias"] = row["shape_accuracy"] / (row["shape_accuracy"] + row["texture_accuracy"])
            if cue_conflict is not None:
                predicted = predict(model, cue_conflict.images, result.normalization, study.training).argmax(1)
                bias = shape_bias(predicted, cue_conflict.images.labels, cue_conflict.texture_labels)
                row |= {f"cue_conflict_{k}": v for k, v in bias.items()}
            rows.append(row)
    return pd.DataFrame(rows)


def _accuracy(
    model: torch.nn.Module,
    normalization: Normalization,
    test: ImageSet,
    view: Callable[[torch.Tensor], torch.Tensor],
    study: Study,
) -> float:
    """A student's accuracy on a view of the test set, made here and released on return."""
    data = ImageSet(view(test.images), test.labels, test.class_names)
    predicted = predict(model, data, normalization, study.training).argmax(1)
    return (predicted == test.labels).double().mean().item()
