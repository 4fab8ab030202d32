"""The in-memory form every image set takes: uint8 tensors, integer labels and class names; and its file."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from mind_the_gap.files import write_atomically


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

        Computed once per set (hashed in slices of whole images, so a set of many gigabytes is never copied), or
        read from the set's file, or derived from the set it is a view of (``with_fingerprint``).
        """
        if "_fingerprint" not in self.__dict__:
            digest = hashlib.blake2b(digest_size=12)
            for chunk in self.images.split(4096):
                digest.update(chunk.contiguous().numpy())
            digest.update(self.labels.contiguous().numpy())
            digest.update(json.dumps(self.class_names).encode())
            self.with_fingerprint(digest.hexdigest())
        return self.__dict__["_fingerprint"]

    def with_fingerprint(self, fingerprint: str) -> ImageSet:
        """This set, its fingerprint known already (from its file, or as a view of a set whose fingerprint is known):
        the set is frozen, so its fingerprint is computed at most once."""
        self.__dict__["_fingerprint"] = fingerprint
        return self


def view_fingerprint(parts: list[tuple[str, torch.Tensor | None]]) -> str:
    """The fingerprint of the images of sets (by their fingerprints) at indices (None: every image), joined in
    order: derived without reading a pixel, so a student's training set is never hashed again."""
    digest = hashlib.blake2b(b"view", digest_size=12)
    for fingerprint, index in parts:
        digest.update(fingerprint.encode())
        digest.update(b"all" if index is None else index.to(torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()


def concat(*sets: ImageSet) -> ImageSet:
    """The images of several sets of the same classes, in order (one set is itself: no copy)."""
    if len(sets) == 1:
        return sets[0]
    names = sets[0].class_names
    if any(s.class_names != names for s in sets) or len({s.images.shape[1:] for s in sets}) > 1:
        raise ValueError("cannot mix image sets of different classes, sizes or channels")
    return ImageSet(torch.cat([s.images for s in sets]), torch.cat([s.labels for s in sets]), names)


def load_image_set(path: str | Path) -> ImageSet:
    """The image set in a safetensors file written by ``save_image_set``, with the fingerprint saved beside it; a
    clear error naming the file otherwise."""
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()
        data = ImageSet(tensors["images"], tensors["labels"], tuple(json.loads(metadata["class_names"])))
    except (SafetensorError, OSError, KeyError, TypeError, json.JSONDecodeError, ValueError) as exc:
        raise ValueError(f"cannot read image set {path}: {exc}") from exc
    return data.with_fingerprint(metadata["fingerprint"]) if "fingerprint" in metadata else data


def save_image_set(data: ImageSet, path: str | Path) -> None:
    """``data`` in one safetensors file (uint8 images, int64 labels, the class names and the fingerprint in the
    metadata), written to a temporary file and moved into place, so a killed run never leaves half a file behind."""
    tensors = {"images": data.images.contiguous(), "labels": data.labels.contiguous()}
    metadata = {"class_names": json.dumps(list(data.class_names)), "fingerprint": data.fingerprint()}
    write_atomically(Path(path), lambda temp: save_file(tensors, str(temp), metadata=metadata))
