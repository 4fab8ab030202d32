from __future__ import annotations

from pathlib import Path

import pytest
import torch
from kedro.io import DatasetError

from mind_the_gap.io import DirectoryDataset, ImageSetDataset

from ..conftest import striped_images


def test_image_set_round_trip_is_exact_and_leaves_no_temporary_file(tmp_path: Path):
    data = striped_images(3, channels=3)
    dataset = ImageSetDataset(filepath=str(tmp_path / "sets" / "real_train.safetensors"))
    assert not dataset.exists()
    dataset.save(data)
    loaded = dataset.load()
    assert torch.equal(loaded.images, data.images)
    assert torch.equal(loaded.labels, data.labels)
    assert loaded.class_names == data.class_names
    assert [p.name for p in (tmp_path / "sets").iterdir()] == ["real_train.safetensors"]


def test_a_damaged_file_is_named(tmp_path: Path):
    path = tmp_path / "real_test.safetensors"
    path.write_bytes(b"\x00" * 20)
    with pytest.raises(DatasetError, match="real_test.safetensors"):
        ImageSetDataset(filepath=str(path)).load()


def test_an_empty_set_round_trips(tmp_path: Path):
    data = striped_images(1).subset(torch.zeros(0, dtype=torch.long))
    dataset = ImageSetDataset(filepath=str(tmp_path / "empty.safetensors"))
    dataset.save(data)
    assert len(dataset.load()) == 0


def test_directory_dataset_hands_out_its_folder_and_refuses_saves(tmp_path: Path):
    dataset = DirectoryDataset(path=str(tmp_path / "students"))
    assert dataset.load() == tmp_path / "students"
    with pytest.raises(DatasetError, match="written by the nodes"):
        dataset.save(tmp_path)
