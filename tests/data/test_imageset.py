"""An image set's fingerprint: computed once, kept in its file, derived for the views students train on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mind_the_gap.data import imageset
from mind_the_gap.data.imageset import ImageSet, load_image_set, save_image_set
from mind_the_gap.experiments.study import SetView, StudentJob

from ..conftest import striped_images


def test_a_set_is_hashed_once_and_its_file_keeps_the_fingerprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    data = striped_images(4)
    fingerprint = data.fingerprint()
    save_image_set(data, tmp_path / "set.safetensors")
    hashed = []
    monkeypatch.setattr(imageset.hashlib, "blake2b", lambda **kw: hashed.append(kw) or pytest.fail("hashed again"))
    assert data.fingerprint() == fingerprint
    loaded = load_image_set(tmp_path / "set.safetensors")
    assert loaded.fingerprint() == fingerprint
    assert hashed == []


def test_a_file_without_a_fingerprint_is_hashed_when_asked(tmp_path: Path):
    data = striped_images(4)
    save_file(
        {"images": data.images, "labels": data.labels},
        str(tmp_path / "old.safetensors"),
        metadata={"class_names": '["0", "1", "2", "3"]'},
    )
    old = load_image_set(tmp_path / "old.safetensors")
    assert old.fingerprint() == ImageSet(data.images, data.labels, ("0", "1", "2", "3")).fingerprint()


def test_a_whole_view_is_its_set_and_a_subset_gets_a_fingerprint_without_hashing_its_images():
    real, synthetic = striped_images(6), striped_images(6, seed=3)
    sets = {"real": real, "synthetic": synthetic}
    whole = StudentJob("whole", 0, (SetView("real", torch.arange(len(real))),))
    assert whole.training_set(sets) is real
    half = torch.arange(0, len(real), 2)
    subset = StudentJob("half", 0, (SetView("real", half),)).training_set(sets)
    assert torch.equal(subset.images, real.images[half])
    other_half = StudentJob("half", 0, (SetView("real", half + 1),)).training_set(sets)
    assert subset.fingerprint() != other_half.fingerprint()
    assert subset.fingerprint() != real.fingerprint()
    mixed = StudentJob("mixed", 0, (SetView("real", half), SetView("synthetic"))).training_set(sets)
    assert len(mixed) == len(half) + len(synthetic)
    assert torch.equal(mixed.images[len(half) :], synthetic.images)
    assert (
        mixed.fingerprint()
        != StudentJob("mixed", 0, (SetView("synthetic"), SetView("real", half))).training_set(sets).fingerprint()
    )
