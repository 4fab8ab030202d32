"""The data_processing nodes: disjoint, seeded, stratified splits of the real source, and their summary."""

from __future__ import annotations

from pathlib import Path

import torch

from mind_the_gap.data.prepare import DatasetConfig
from mind_the_gap.pipelines.data_processing.nodes import describe_real_data, prepare_real_data


def rows(images: torch.Tensor) -> set[bytes]:
    return {image.numpy().tobytes() for image in images}


def test_splits_are_disjoint_stratified_and_seeded(fashion_dir: Path):
    config = DatasetConfig(path=fashion_dir, split={"generator_pool": 0.5, "val": 0.1})
    pool, train, val, test = prepare_real_data(config)
    # The stand-in has 40 training images of every class: half to the generator pool, 4 to validation.
    assert pool.class_counts().tolist() == [20] * 10
    assert val.class_counts().tolist() == [4] * 10
    assert train.class_counts().tolist() == [16] * 10
    assert test.class_counts().tolist() == [10] * 10
    parts = [rows(part.images) for part in (pool, train, val)]
    assert sum(map(len, parts)) == len(set().union(*parts)) == 400  # no image in two splits
    again = prepare_real_data(config)
    assert all(torch.equal(a.images, b.images) for a, b in zip((pool, train, val, test), again, strict=True))
    reseeded = prepare_real_data(config.model_copy(update={"seed": 1}))
    assert not torch.equal(reseeded[1].images, train.images)


def test_summary_counts_every_split_per_class(fashion_dir: Path):
    summary = describe_real_data(*prepare_real_data(DatasetConfig(path=fashion_dir)))
    assert list(summary.columns) == ["class", "generator_pool", "train", "val", "test"]
    assert len(summary) == 10
    assert summary[["generator_pool", "train", "val"]].sum(axis=1).eq(40).all()
