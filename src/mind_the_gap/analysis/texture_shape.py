"""Texture or shape: trained students on shape-only (edges) and texture-only (patch-shuffled) views of the real test
set and, where given, on Geirhos et al.'s cue-conflict images, with each student's shape bias; and on control views
(blurred, noisy, lower contrast) that cost accuracy without singling out texture, so that a source whose students
lose more on every view reads as brittle rather than as leaning on texture."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd
import torch
from pydantic import Field

from mind_the_gap.analysis.cache import cached_table
from mind_the_gap.config import Config
from mind_the_gap.data import views
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.data.views import (
    blurred,
    edge_view,
    load_cue_conflict,
    low_contrast,
    noisy,
    patch_shuffled,
    shape_bias,
)
from mind_the_gap.experiments.study import Study, load_students, parent_keys
from mind_the_gap.training import engine
from mind_the_gap.training.engine import Normalization, predict
from mind_the_gap.training.student_cache import code_version

# A group of students: the variant they were trained under, their source, and their cell's runs table.
Group = tuple[str, str, pd.DataFrame]
# The views of the test set, in the order of the table's columns: two that keep one cue, three controls.
VIEWS = ("shape", "texture", "blur", "noise", "contrast")


class ViewsConfig(Config):
    """How each view of the test set is made. The controls' defaults cost a real-trained student on the offline
    default about what the shape view costs it (README: "Settings")."""

    texture_grid: int = Field(4, ge=2, description="the texture view: patches per side, shuffled")
    blur_sigma: float = Field(
        0.04, gt=0, le=0.5, description="the blur control: the Gaussian's standard deviation, a share of the image side"
    )
    noise_std: float = Field(
        0.08, gt=0, le=1, description="the noise control: Gaussian pixel noise's standard deviation, a share of 0-255"
    )
    contrast: float = Field(0.88, gt=0, lt=1, description="the contrast control: each image's contrast kept, a share")
    cue_conflict_dir: str | None = Field(None, description="a folder of cue-conflict images in Geirhos et al.'s layout")


def texture_shape_views(
    groups: Sequence[Group], seeds: Iterable[int], study: Study, analyses: Path, config: ViewsConfig
) -> pd.DataFrame:
    """One row per student of ``groups`` and seed: its accuracy on the study's test set and on each view of it
    (``<view>_accuracy`` for each of ``VIEWS``), the shape bias of the shape and texture views and, with
    ``config.cue_conflict_dir``, its cue-conflict shape bias. Cached in ``analyses`` by the students, the test set,
    the settings and the cue-conflict folder's files."""
    seeds = list(seeds)
    cue_conflict_dir = config.cue_conflict_dir
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
        "views": config.model_dump(mode="json"),
        "cue_conflict_files": files,
        "students": [
            [variant, source, parent_keys(rows, seeds, source, "ablations.texture_shape")]
            for variant, source, rows in groups
        ],
    }
    return cached_table(analyses, parts, lambda: _evaluate(groups, seeds, study, config))


def view_makers(config: ViewsConfig, image_side: int) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """How to make each of ``VIEWS`` from uint8 images of ``image_side`` pixels; the random ones from a fixed seed, so
    every student sees the same view."""
    return {
        "shape": edge_view,
        "texture": lambda images: patch_shuffled(images, config.texture_grid, torch.Generator().manual_seed(0)),
        "blur": lambda images: blurred(images, config.blur_sigma * image_side),
        "noise": lambda images: noisy(images, config.noise_std, torch.Generator().manual_seed(0)),
        "contrast": lambda images: low_contrast(images, config.contrast),
    }


def _evaluate(groups: Sequence[Group], seeds: list[int], study: Study, config: ViewsConfig) -> pd.DataFrame:
    test = study.test
    # Each view is made when a student is tested on it and released after: one view of the test set at a time.
    test_views = view_makers(config, min(test.image_size))
    cue_conflict = None
    if config.cue_conflict_dir is not None:
        cue_conflict = load_cue_conflict(config.cue_conflict_dir, test.class_names, test.image_size[0], test.channels)
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
