"""Every cache's key of a fixed input, as the code that stored the caches on disk made it: a change to a key's bytes
(the hash, the JSON form, the length) shows here, since it orphans every entry of that cache."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from mind_the_gap.analysis.cache import cached_table
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.generators.class_diffusion import ClassDiffusionConfig
from mind_the_gap.generators.offline import generator_key
from mind_the_gap.generators.store import run_key
from mind_the_gap.keys import content_key
from mind_the_gap.training.student_cache import StudentStore

PARTS = {
    "seed": 7,
    "code": "0123abcd",
    "settings": {"lr": 0.1, "augment": ["crop", "flip"], "name": "ünïcode"},
    "parent": None,
}


def test_a_content_key_is_the_sha256_of_the_json_cut_to_its_length():
    assert content_key({"b": 1, "a": 2}, 8) == "6f21dfd7"  # sha256 of '{"b": 1, "a": 2}'
    assert content_key({"b": 1, "a": 2}, 8, sort_keys=True) == content_key({"a": 2, "b": 1}, 8)


def test_the_student_store_key_is_unchanged():
    assert StudentStore.key(PARTS) == "baf4e3edb8d30a21dcae"


def test_the_generated_set_run_key_is_unchanged():
    assert run_key(PARTS) == "0332e994d0e925ed"


def test_the_analysis_cache_key_is_unchanged(tmp_path: Path):
    parts = PARTS | {"students": Path("data/06_models/students")}  # not JSON: entered as its text
    cached_table(tmp_path, parts, lambda: pd.DataFrame({"a": [1]}))
    assert [path.name for path in tmp_path.iterdir()] == ["cc2981ea4aac0535dc2f.csv"]


def test_the_offline_generator_key_is_unchanged():
    pool = ImageSet(torch.arange(32, dtype=torch.uint8).view(2, 1, 4, 4), torch.tensor([0, 1]), ("a", "b"))
    diffusion = ClassDiffusionConfig(
        block_out_channels=(8, 16), norm_num_groups=4, steps=3, batch_size=8, warmup_steps=1
    )
    assert generator_key(pool, diffusion, "float32") == "0ef1f1909caa6aa8"
