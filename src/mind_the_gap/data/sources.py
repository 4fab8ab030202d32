"""Readers that turn a real-image source into ImageSets: Fashion-MNIST IDX files, torchvision, image folders."""

from __future__ import annotations

import gzip
import inspect
import logging
import os
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps

from mind_the_gap.data.imageset import ImageSet

log = logging.getLogger(__name__)
T, Item = TypeVar("T"), TypeVar("Item")

FASHION_MNIST_CLASSES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
# The one filter of every resize, of real or generated images (antialiased when shrinking), so that a student
# cannot tell real from synthetic images by their resampling. Bicubic, as ImageNet's usual preprocessing (timm's) and
# the image-folder decoder always used; Fashion-MNIST at 28 px and the offline generator's images are never resized.
RESAMPLING: Literal["bicubic", "bilinear"] = "bicubic"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}


class DataSourceError(ValueError):
    """Bad or missing input data; the message names the culprit."""


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (plain or gzipped) as a numpy array: the format of MNIST and Fashion-MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataSourceError(f"cannot read IDX file {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataSourceError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = raw[4 + 4 * ndim :]
    if len(body) != int(np.prod(shape)):
        raise DataSourceError(f"{path} is truncated: header says {shape}, found {len(body)} bytes of data")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path:
    for name in (stem, f"{stem}.gz"):
        if (directory / name).is_file():
            return directory / name
    raise DataSourceError(f"missing {stem}[.gz] in {directory} (Fashion-MNIST IDX files; `make data` puts them there)")


def load_fashion_mnist(directory: Path) -> tuple[ImageSet, ImageSet]:
    """The official Fashion-MNIST train and test splits from a folder of IDX files."""
    if not directory.is_dir():
        raise DataSourceError(f"dataset.path {directory} does not exist (run `make data` to fetch Fashion-MNIST)")
    splits = []
    for prefix in ("train", "t10k"):
        images = read_idx(_find_idx(directory, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find_idx(directory, f"{prefix}-labels-idx1-ubyte"))
        if images.shape[0] != labels.shape[0]:
            raise DataSourceError(f"{directory}: {prefix} has {images.shape[0]} images but {labels.shape[0]} labels")
        splits.append(
            ImageSet(
                torch.from_numpy(images.copy()).unsqueeze(1),
                torch.from_numpy(labels.astype(np.int64)),
                FASHION_MNIST_CLASSES,
            )
        )
    return splits[0], splits[1]


def load_torchvision(name: str, root: Path) -> tuple[ImageSet, ImageSet | None]:
    """A torchvision classification dataset (downloaded into ``root`` when missing): its train and test splits."""
    import torchvision.datasets as tvd

    dataset_cls = getattr(tvd, name, None)
    if dataset_cls is None or not isinstance(dataset_cls, type):
        raise DataSourceError(f"dataset.source torchvision:{name}: torchvision.datasets has no dataset {name!r}")
    signature = inspect.signature(dataset_cls)

    def split(train: bool):
        if "train" in signature.parameters:
            kwargs = {"train": train}
        elif "split" in signature.parameters:
            kwargs = {"split": "train" if train else "test"}
        elif train:
            kwargs = {}
        else:
            return None
        try:
            return dataset_cls(root=str(root), download=True, **kwargs)
        except Exception as exc:  # torchvision raises many types for network and checksum failures
            raise DataSourceError(f"torchvision:{name} could not be loaded into {root}: {exc}") from exc

    train, test = split(True), split(False)
    return _from_torchvision(train, name), (_from_torchvision(test, name) if test is not None else None)


def _from_torchvision(dataset, name: str) -> ImageSet:
    # Most classification datasets keep all images in a `data` array; fall back to decoding item by item.
    data = getattr(dataset, "data", None)
    targets = getattr(dataset, "targets", None)
    if targets is None:
        targets = getattr(dataset, "labels", None)
    if isinstance(data, (np.ndarray, torch.Tensor)) and targets is not None and len(data) == len(targets):
        images = torch.as_tensor(np.asarray(data))
        if images.ndim == 3:
            images = images.unsqueeze(1)
        elif images.ndim == 4 and images.shape[-1] in (1, 3):
            images = images.permute(0, 3, 1, 2)
        labels = torch.as_tensor(np.asarray(targets), dtype=torch.int64)
    else:
        pairs = [dataset[i] for i in range(len(dataset))]
        images = torch.stack([_pil_to_tensor(img) for img, _ in pairs])
        labels = torch.tensor([int(label) for _, label in pairs], dtype=torch.int64)
    classes = getattr(dataset, "classes", None) or [str(i) for i in range(int(labels.max()) + 1)]
    return ImageSet(images.to(torch.uint8).contiguous(), labels, tuple(str(c) for c in classes))


def _pil_to_tensor(image: Image.Image) -> torch.Tensor:
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    array = np.asarray(image, dtype=np.uint8)
    return (
        torch.from_numpy(array.copy()).unsqueeze(0)
        if array.ndim == 2
        else torch.from_numpy(array.copy()).permute(2, 0, 1)
    )


def _to_8bit(image: Image.Image) -> Image.Image:
    """Deep grey images (16-bit, 32-bit integer, float) scaled to 8 bits: PIL's convert would clip them to white.

    16-bit modes map 0-65535 to 0-255; 32-bit integers too when they exceed 255 (PIL reads some 16-bit files so);
    floats are taken as 0-1 when they stay within it, else as 0-255.
    """
    if not (image.mode in ("I", "F") or image.mode.startswith("I;16")):
        return image
    array = np.asarray(image, dtype=np.float64)
    peak = float(array.max()) if array.size else 0.0
    if image.mode == "F":
        scale = 255.0 if peak <= 1.0 else 1.0
    else:
        scale = 255.0 / 65535.0 if image.mode.startswith("I;16") or peak > 255 else 1.0
    return Image.fromarray(np.clip(array * scale, 0, 255).round().astype(np.uint8), mode="L")


def _decode(path: Path, size: int, channels: int, crop: float) -> torch.Tensor:
    """One image file as uint8 (C, size, size): upright (EXIF orientation), shorter side resized to ``size / crop``
    (``size`` itself at crop 1; 256 px for 224 at 0.875, ImageNet's evaluation), then centre-cropped to ``size``."""
    with Image.open(path) as image:
        image.load()  # decode now, so that a truncated file fails here, naming it
        image = _to_8bit(ImageOps.exif_transpose(image)).convert("L" if channels == 1 else "RGB")
        side = round(size / crop)
        scale = side / min(image.size)
        width, height = max(side, round(image.width * scale)), max(side, round(image.height * scale))
        image = image.resize((width, height), Image.Resampling[RESAMPLING.upper()], reducing_gap=3.0)
        left, top = (width - size) // 2, (height - size) // 2
        return _pil_to_tensor(image.crop((left, top, left + size, top + size)))


def _is_image_file(path: Path, root: Path) -> bool:
    """An image by its suffix, outside hidden files and folders (macOS ``._*`` forks, ``.ipynb_checkpoints``)."""
    hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
    return not hidden and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


@dataclass(frozen=True)
class FolderListing:
    """The image files of a one-folder-per-class tree that are to be decoded, with their labels."""

    directory: Path
    class_names: tuple[str, ...]
    files: tuple[Path, ...]
    labels: tuple[int, ...]


def list_image_folder(
    directory: Path, max_per_class: int | None, seed: int, classes: Sequence[str] | None = None
) -> FolderListing:
    """The files of one folder per class, listed once for both the size probe and the decoder.

    With ``classes`` (folder names, or indices as strings) only those folders are listed, labelled in that order,
    so nothing else is ever decoded; with ``max_per_class`` only a random choice of that many files per class,
    seeded by ``seed`` and the class's name (the same choice whichever other classes are asked for).
    """
    if not directory.is_dir():
        raise DataSourceError(f"image folder {directory} does not exist")
    class_dirs = sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataSourceError(f"image folder {directory} has no class sub-folders")
    if classes:
        class_dirs = [class_dirs[i] for i in class_indices([p.name for p in class_dirs], classes)]
    files: list[Path] = []
    labels: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        class_files = sorted(p for p in class_dir.rglob("*") if _is_image_file(p, class_dir))
        if not class_files:
            raise DataSourceError(f"class folder {class_dir} holds no images")
        if max_per_class is not None and len(class_files) > max_per_class:
            rng = np.random.default_rng([seed, zlib.crc32(class_dir.name.encode())])
            keep = np.sort(rng.choice(len(class_files), size=max_per_class, replace=False))
            class_files = [class_files[i] for i in keep]
        files += class_files
        labels += [label] * len(class_files)
    return FolderListing(directory, tuple(p.name for p in class_dirs), tuple(files), tuple(labels))


def class_indices(class_names: Sequence[str], classes: Sequence[str]) -> list[int]:
    """The index of each of ``classes`` (names, or indices as strings) among ``class_names``, in the order given."""
    lookup = {name: i for i, name in enumerate(class_names)}
    indices, unknown = [], []
    for name in classes:
        if name in lookup:
            indices.append(lookup[name])
        elif str(name).isdigit() and int(name) < len(class_names):
            indices.append(int(name))
        else:
            unknown.append(name)
    if unknown:
        raise DataSourceError(
            f"unknown class name(s) in dataset.classes: {', '.join(map(str, unknown))} "
            f"(known: {', '.join(class_names[:20])}{', ...' if len(class_names) > 20 else ''})"
        )
    return indices


def _in_threads(function: Callable[[Item], T], items: Sequence[Item]) -> list[T]:
    # PIL releases the GIL while reading and decoding, so threads use every core without pickling images.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(function, items))


def _unreadable(path: Path, exc: Exception) -> DataSourceError:
    return DataSourceError(
        f"unreadable image {path}: {type(exc).__name__}: {exc} (set dataset.skip_corrupt: true to skip such files)"
    )


def _upright_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image once upright, read from its header without decoding the pixels."""
    with Image.open(path) as image:
        width, height = image.size
        # The base getexif reads only what the header held; PNG's own would decode the pixels to look past them.
        orientation = Image.Image.getexif(image).get(ExifTags.Base.Orientation, 1)
    # Orientations 5-8 turn the image by a quarter, as the decoder's exif_transpose does.
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def shared_image_size(root: Path, listings: Sequence[FolderListing], skip_corrupt: bool) -> tuple[int, int]:
    """The upright (width, height) every listed image shares, or a DataSourceError naming two that differ.

    Unreadable headers are skipped with ``skip_corrupt`` (the decoder skips those files too), else named.
    """
    files = [path for listing in listings for path in listing.files]

    def probe(path: Path) -> tuple[int, int] | None:
        try:
            return _upright_size(path)
        except Exception as exc:  # damaged files make PIL raise almost anything (struct.error, IndexError, ...)
            if skip_corrupt:
                return None
            raise _unreadable(path, exc) from exc

    sized = [(path, size) for path, size in zip(files, _in_threads(probe, files), strict=True) if size is not None]
    if not sized:
        raise DataSourceError(f"no image in {root} has a readable header")
    first_path, first_size = sized[0]
    other = next(((path, size) for path, size in sized if size != first_size), None)
    if other is None:
        return first_size
    examples = ", ".join(f"{path.relative_to(root)} {w}x{h}" for path, (w, h) in ((first_path, first_size), other))
    raise DataSourceError(
        f"images in {root} differ in size ({examples}): "
        f"set dataset.image_size (e.g. {_usual_side([size for _, size in sized])})"
    )


def _usual_side(sizes: list[tuple[int, int]]) -> int:
    """The most common shorter side (the larger one on a tie), to suggest as dataset.image_size."""
    counts = Counter(min(size) for size in sizes)
    return max(counts, key=lambda side: (counts[side], side))


@dataclass(frozen=True)
class DecodedFolder(ImageSet):
    """Images decoded from an image folder, with the files they came from, row by row: the evaluation splits cut out
    of it are decoded again from their files with the evaluation crop (``decoded_again``)."""

    source: FolderListing

    def decoded_again(self, index: torch.Tensor, crop: float) -> ImageSet:
        """The images at ``index`` decoded again from their files, at this set's size and channels, with ``crop``."""
        rows = index.tolist()
        listing = FolderListing(
            self.source.directory,
            self.class_names,
            tuple(self.source.files[i] for i in rows),
            tuple(self.source.labels[i] for i in rows),
        )
        return load_image_folder(listing, self.image_size[0], self.channels, skip_corrupt=False, crop=crop)


def load_image_folder(
    listing: FolderListing, image_size: int, channels: int, skip_corrupt: bool, crop: float = 1.0
) -> DecodedFolder:
    """The listed images, in any format PIL reads, decoded once into a uint8 (N, C, size, size) tensor: the shorter
    side resized to ``image_size / crop``, then centre-cropped to ``image_size``.

    Each image is decoded straight into its row of that tensor: the set is held once, never as a list and a copy.
    """
    images = torch.empty((len(listing.files), channels, image_size, image_size), dtype=torch.uint8)

    def decode(i: int) -> bool:
        try:
            images[i] = _decode(listing.files[i], image_size, channels, crop)
            return True
        except Exception as exc:  # damaged files make PIL raise almost anything (struct.error, IndexError, ...)
            if skip_corrupt:
                return False
            raise _unreadable(listing.files[i], exc) from exc

    readable = _in_threads(decode, range(len(listing.files)))
    kept = [i for i, ok in enumerate(readable) if ok]
    if len(kept) < len(listing.files):
        log.warning("skipped %d unreadable image(s) in %s", len(listing.files) - len(kept), listing.directory)
    kept_labels = torch.tensor([listing.labels[i] for i in kept], dtype=torch.int64)
    empty = [name for c, name in enumerate(listing.class_names) if not bool((kept_labels == c).any())]
    if empty:
        raise DataSourceError(f"class folder(s) {', '.join(empty)} in {listing.directory} hold no readable image")
    if len(kept) < len(images):
        images = images[torch.tensor(kept, dtype=torch.int64)]
    decoded = FolderListing(
        listing.directory,
        listing.class_names,
        tuple(listing.files[i] for i in kept),
        tuple(listing.labels[i] for i in kept),
    )
    return DecodedFolder(images, kept_labels, listing.class_names, decoded)
