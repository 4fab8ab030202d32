"""The in-memory form every image set takes: uint8 tensors, integer labels and class names."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ImageSet:
    """Images as a uint8 tensor of shape (N, C, H, W), labels as int64 (N,), and the class names.

    Label ``k`` names ``class_names[k]``; a subset of an image set keeps the full list of names so that
    labels stay comparable across the real, synthetic and test sets of one experiment.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                "ImageSet.images must be uint8 of shape (N, C, H, W), "
                f"got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"ImageSet.labels must be int64 of shape ({self.images.shape[0]},), got "
                f"{self.labels.dtype} {tuple(self.labels.shape)}"
            )
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.class_names)):
            raise ValueError(
                f"ImageSet.labels must lie in [0, {len(self.class_names)}), got "
                f"[{int(self.labels.min())}, {int(self.labels.max())}]"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def subset(self, index: torch.Tensor) -> ImageSet:
        """The images at ``index`` (a long or bool tensor), with the same class names."""
        return ImageSet(self.images[index], self.labels[index], self.class_names)

    def class_counts(self) -> torch.Tensor:
        return torch.bincount(self.labels, minlength=self.num_classes)

    def fingerprint(self) -> str:
        """A short content hash of the pixels, labels and class names: the key of anything derived from the set.

        Hashed in slices of whole images, so a set of many gigabytes is never copied.
        """
        digest = hashlib.blake2b(digest_size=12)
        for chunk in self.images.split(4096):
            digest.update(chunk.contiguous().numpy())
        digest.update(self.labels.contiguous().numpy())
        digest.update(json.dumps(self.class_names).encode())
        return digest.hexdigest()
