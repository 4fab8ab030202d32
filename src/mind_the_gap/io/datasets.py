"""Kedro datasets for image tensors and for the store of trained students."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.training.checkpoint import write_atomically
from mind_the_gap.training.students import StudentStore


class ImageSetDataset(AbstractDataset[ImageSet, ImageSet]):
    """An ImageSet in one safetensors file: uint8 images, int64 labels, class names in the metadata.

    Written to a temporary file and moved into place, so a killed run never leaves half a file behind.
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def _load(self) -> ImageSet:
        path = Path(self._filepath)
        try:
            tensors = load_file(str(path))
            with safe_open(str(path), framework="pt") as f:
                class_names = tuple(json.loads(f.metadata()["class_names"]))
            return ImageSet(tensors["images"], tensors["labels"], class_names)
        except (SafetensorError, OSError, KeyError, json.JSONDecodeError, ValueError) as exc:
            raise DatasetError(f"cannot read image set {path}: {exc}") from exc

    def _save(self, data: ImageSet) -> None:
        tensors = {"images": data.images.contiguous(), "labels": data.labels.contiguous()}
        metadata = {"class_names": json.dumps(list(data.class_names))}
        write_atomically(Path(self._filepath), lambda temp: save_file(tensors, str(temp), metadata=metadata))

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()


class StudentStoreDataset(AbstractDataset[StudentStore, None]):
    """The folder of trained students (checkpoints and results by key), handed to nodes as a StudentStore."""

    def __init__(self, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}

    def _load(self) -> StudentStore:
        return StudentStore(self._path)

    def _save(self, data: None) -> None:
        raise DatasetError("the student store is written by the training nodes, one student at a time")

    def _exists(self) -> bool:
        return True
