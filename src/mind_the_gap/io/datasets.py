"""Kedro datasets for image tensors and for the store of trained students."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from mind_the_gap.data.imageset import ImageSet, load_image_set, save_image_set


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
        try:
            return load_image_set(Path(self._filepath))
        except ValueError as exc:
            raise DatasetError(str(exc)) from exc

    def _save(self, data: ImageSet) -> None:
        save_image_set(data, Path(self._filepath))

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()


class DirectoryDataset(AbstractDataset[Path, Path]):
    """A folder that nodes manage themselves (a cache of trained models, generated images), handed out as a Path.

    Declaring it in the catalog puts the folder in the graph and in one place of the configuration.
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}

    def _load(self) -> Path:
        return self._path

    def _save(self, data: Path) -> None:
        raise DatasetError(f"{self._path} is written by the nodes that use it, not through the catalog")

    def _exists(self) -> bool:
        return True
