"""The in-memory form every image set takes: uint8 tensors, integer labels and class names; and its file."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from mind_the_gap import memory
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
        memory.track(self.images)  # every set's pixels count in the node that holds them

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

    @property
    def nbytes(self) -> int:
        return self.images.numel() * self.images.element_size()

    def subset(self, index: torch.Tensor) -> ImageSet:
        """The images at ``index`` (a long or bool tensor), with the same class names: a copy (see ``ImageView``
        for a subset that copies nothing)."""
        return ImageSet(self.images[index], self.labels[index], self.class_names)

    def chunks(self, size: int) -> Iterator[torch.Tensor]:
        """The images in order, ``size`` at a time (views, no copies)."""
        return iter(self.images.split(size))

    def gather(self, index: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """The images at ``index`` (a long tensor on the host), into ``out`` when given."""
        return torch.index_select(self.images, 0, index, out=out) if out is not None else self.images[index]

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

    @property
    def file(self) -> Path | None:
        """The file the set was read from (``load_image_set``): what another process maps instead of a copy."""
        return self.__dict__.get("_file")

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


@dataclass(frozen=True)
class ImageView:
    """The images of one or more sets of the same classes at indices (``None``: every image), joined in order, and
    never copied: a student's training set when it is part of a stored set (a data-efficiency fraction) or spans
    several (all real + all synthetic). Batches are gathered from the sets; only the labels are joined."""

    parts: tuple[tuple[ImageSet, torch.Tensor | None], ...]
    labels: torch.Tensor = field(init=False)
    _starts: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        first = self.parts[0][0]
        if any(
            s.class_names != first.class_names or s.images.shape[1:] != first.images.shape[1:] for s, _ in self.parts
        ):
            raise ValueError("cannot join image sets of different classes, sizes or channels")
        labels = [data.labels if index is None else data.labels[index] for data, index in self.parts]
        object.__setattr__(self, "labels", torch.cat(labels))
        object.__setattr__(self, "_starts", torch.tensor([0, *np.cumsum([len(x) for x in labels])]))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.parts[0][0].class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.parts[0][0].channels

    @property
    def image_size(self) -> tuple[int, int]:
        return self.parts[0][0].image_size

    @property
    def nbytes(self) -> int:
        first = self.parts[0][0]
        return len(self) * first.nbytes // max(1, len(first))

    @property
    def part_sizes(self) -> list[int]:
        """The number of images each part contributes, in order."""
        return self._starts.diff().tolist()

    def fingerprint(self) -> str:
        """Derived from the sets' fingerprints and the indices, without reading a pixel (``view_fingerprint``)."""
        return view_fingerprint([(data.fingerprint(), index) for data, index in self.parts])

    def gather(self, index: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """The images at ``index`` (positions in the view, a long tensor on the host), into ``out`` when given."""
        if len(self.parts) == 1:
            data, part_index = self.parts[0]
            return data.gather(index if part_index is None else part_index[index], out)
        out = torch.empty((len(index), *self.parts[0][0].images.shape[1:]), dtype=torch.uint8) if out is None else out
        part_of = torch.searchsorted(self._starts, index, right=True) - 1
        for number, (data, part_index) in enumerate(self.parts):
            rows = (part_of == number).nonzero().squeeze(1)
            if len(rows):
                local = index[rows] - self._starts[number]
                out[rows] = data.images[local if part_index is None else part_index[local]]
        return out

    def chunks(self, size: int) -> Iterator[torch.Tensor]:
        """The images in order, gathered ``size`` at a time."""
        for start in range(0, len(self), size):
            yield self.gather(torch.arange(start, min(start + size, len(self))))


TrainingImages = ImageSet | ImageView


def _mapped_images(path: Path) -> torch.Tensor:
    """The images of a safetensors file mapped into memory copy-on-write: pages are read when touched, and shared by
    every process that maps the same file (several workers on one host hold one copy, in the page cache)."""
    with path.open("rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        entry = json.loads(file.read(length))["images"]
    if entry["dtype"] != "U8":
        raise ValueError(f"its images are {entry['dtype']}, not uint8")
    begin, end = entry["data_offsets"]
    if end == begin:
        return torch.zeros(entry["shape"], dtype=torch.uint8)
    pixels = np.memmap(path, dtype=np.uint8, mode="c", offset=8 + length + begin, shape=(end - begin,))
    return torch.from_numpy(pixels).view(entry["shape"])


def load_image_set(path: str | Path) -> ImageSet:
    """The image set in a safetensors file written by ``save_image_set``, its images memory-mapped (see
    ``_mapped_images``) and its fingerprint the one saved beside it; a clear error naming the file otherwise."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()
            labels = f.get_tensor("labels")
        images = _mapped_images(path)
        data = ImageSet(memory.track(images, read=True), labels, tuple(json.loads(metadata["class_names"])))
    except (SafetensorError, OSError, KeyError, TypeError, json.JSONDecodeError, ValueError, struct.error) as exc:
        raise ValueError(f"cannot read image set {path}: {exc}") from exc
    data.__dict__["_file"] = path.resolve()
    return data.with_fingerprint(metadata["fingerprint"]) if "fingerprint" in metadata else data


def save_image_set(data: ImageSet, path: str | Path) -> None:
    """``data`` in one safetensors file (uint8 images, int64 labels, the class names and the fingerprint in the
    metadata), written to a temporary file and moved into place, so a killed run never leaves half a file behind."""
    tensors = {"images": data.images.contiguous(), "labels": data.labels.contiguous()}
    metadata = {"class_names": json.dumps(list(data.class_names)), "fingerprint": data.fingerprint()}
    write_atomically(Path(path), lambda temp: save_file(tensors, str(temp), metadata=metadata))
